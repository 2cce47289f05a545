"""Defects: oddities the scanner found and recorded instead of guessing.

A defect in :data:`AMBIGUOUS_DEFECTS` means that different parsers (the stdlib, dkimpy, mail
clients) would read the message differently. Under the default policy the scanner refuses
such a message with :class:`~mailroute.errors.AmbiguousMessageError`; under
``on_ambiguity="record"`` it records the defect and keeps every byte.
"""

from __future__ import annotations

import enum

from mailroute.records import record

__all__ = ["AMBIGUOUS_DEFECTS", "Defect", "DefectKind"]


class DefectKind(enum.StrEnum):
    """What the scanner found."""

    # parser-differential hazards (ambiguous)
    DUPLICATE_SINGLETON_FIELD = "duplicate-singleton-field"
    DUPLICATE_CONTENT_FIELD = "duplicate-content-field"
    SPACE_BEFORE_COLON = "space-before-colon"
    INVALID_FIELD_NAME = "invalid-field-name"
    BARE_CR_IN_HEADER = "bare-cr-in-header"
    DUPLICATE_PARAMETER = "duplicate-parameter"
    CONFLICTING_PARAMETER = "conflicting-parameter"
    # legal or harmless shapes readers agree on (recorded)
    OBSOLETE_SPACE_BEFORE_COLON = "obsolete-space-before-colon"
    REPEATED_PARAMETER = "repeated-parameter"
    # structural oddities (recorded)
    MBOX_FROM_LINE = "mbox-from-line"
    LEADING_CONTINUATION = "leading-continuation-line"
    MISSING_HEADER_SEPARATOR = "missing-header-body-separator"
    MULTIPART_WITHOUT_BOUNDARY = "multipart-without-boundary"
    INVALID_BOUNDARY = "invalid-boundary"
    NO_START_BOUNDARY = "no-start-boundary"
    MISSING_CLOSE_BOUNDARY = "missing-close-boundary"
    BOUNDARY_PREFIX_LINE = "boundary-prefix-line"
    BOUNDARY_IN_EPILOGUE = "boundary-in-epilogue"
    ENCODED_MULTIPART = "encoded-multipart"
    NESTED_BOUNDARY_REUSE = "nested-boundary-reuse"
    MALFORMED_CONTENT_TYPE = "malformed-content-type"
    INVALID_BASE64 = "invalid-base64"
    UNKNOWN_TRANSFER_ENCODING = "unknown-transfer-encoding"
    # a Content-Type or Content-Disposition that lenient readers take otherwise (recorded)
    READER_DEPENDENT_CONTENT_FIELD = "reader-dependent-content-field"


AMBIGUOUS_DEFECTS: frozenset[DefectKind] = frozenset({
    DefectKind.DUPLICATE_SINGLETON_FIELD,
    DefectKind.DUPLICATE_CONTENT_FIELD,
    DefectKind.SPACE_BEFORE_COLON,
    DefectKind.INVALID_FIELD_NAME,
    DefectKind.BARE_CR_IN_HEADER,
    DefectKind.DUPLICATE_PARAMETER,
    DefectKind.CONFLICTING_PARAMETER,
})

# Defects after which no transform may edit the entity: its structure is in doubt.
STRUCTURAL_DEFECTS: frozenset[DefectKind] = frozenset({
    DefectKind.NO_START_BOUNDARY,
    DefectKind.MISSING_CLOSE_BOUNDARY,
    DefectKind.MULTIPART_WITHOUT_BOUNDARY,
    DefectKind.INVALID_BOUNDARY,
    DefectKind.BOUNDARY_IN_EPILOGUE,
    DefectKind.ENCODED_MULTIPART,
    DefectKind.MISSING_HEADER_SEPARATOR,
    DefectKind.NESTED_BOUNDARY_REUSE,
    DefectKind.READER_DEPENDENT_CONTENT_FIELD,
})


@record(frozen=True)
class Defect:
    """One defect: its kind, the path of the entity it was found in, and a safe detail.

    ``detail`` never quotes message content beyond a header field *name*.
    """

    kind: DefectKind
    path: tuple[int, ...]
    detail: str = ""

    @property
    def ambiguous(self) -> bool:
        """True when parsers would disagree about this message."""
        return self.kind in AMBIGUOUS_DEFECTS

    def __str__(self) -> str:
        where = ".".join(str(i) for i in self.path) or "root"
        suffix = f" ({self.detail})" if self.detail else ""
        return f"{self.kind.value} at {where}{suffix}"
