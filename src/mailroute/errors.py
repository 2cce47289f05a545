"""The one error hierarchy of mailroute.

Every exception mailroute raises on purpose is a :class:`MailrouteError`. Each class carries
the SMTP reply an adapter sends by default (``default_reply``) and whether the condition is
temporary (``retryable``), in the spirit of h11's ``error_status_hint``::

    MailrouteError                       .reply (Reply), .retryable
    ├── ConfigError                      bad TOML, unknown key, unreadable key file   (EX_CONFIG)
    ├── MessageError                     the input message is at fault                 (5.6.0)
    │   ├── MalformedMessageError        cannot be scanned or decoded
    │   ├── AmbiguousMessageError        parsers would disagree on what the message is
    │   ├── UnsafeHeaderValueError       a generated field would contain CR, LF or NUL
    │   └── LimitExceededError           size, depth, header bytes, part count, line length
    ├── PolicyError                      the policy refuses the message               (5.7.1)
    │   └── LoopDetectedError            the message has been here before             (5.4.6)
    ├── CryptoError                      a cryptographic operation failed
    │   ├── DecryptionError              no usable key, corrupt or unsupported envelope
    │   ├── SigningError                 the signing key or certificate is unusable
    │   └── KeyUnavailableError          a key store is temporarily unavailable        (4.3.0)
    ├── TemporaryError                   a dependency failed for now: retry later      (4.3.0)
    ├── ProtocolError                    milter or SMTP framing violations
    └── InternalError                    a bug or an unexpected exception              (4.3.0)

Error texts are built from mailroute's own words and safe identifiers only: never key
material, passphrases, or raw header content of the message being processed.
"""

from __future__ import annotations

from mailroute.results import Reply

__all__ = [
    "AmbiguousMessageError",
    "ConfigError",
    "CryptoError",
    "DecryptionError",
    "InternalError",
    "InvalidArgumentError",
    "KeyUnavailableError",
    "LimitExceededError",
    "LoopDetectedError",
    "MailrouteError",
    "MalformedMessageError",
    "MessageError",
    "OutputError",
    "PolicyError",
    "ProtocolError",
    "SigningError",
    "TemporaryError",
    "UnsafeHeaderValueError",
]


class MailrouteError(Exception):
    """Base class of every error mailroute raises deliberately.

    Args:
        message: a human-readable explanation, free of secrets and of message content.
        reply: the SMTP reply to send instead of the class default.
    """

    default_reply: Reply = Reply(451, "4.3.0", "temporary local problem")
    retryable: bool = True
    #: what each filter did up to the one that raised it (set by the pipeline that ran it:
    #: the log line and ``try`` show it)
    trace: tuple[tuple[str, str], ...] = ()

    def __init__(self, message: str, *, reply: Reply | None = None) -> None:
        super().__init__(message)
        self.reply: Reply = reply if reply is not None else self.default_reply.with_text(message)


class ConfigError(MailrouteError):
    """The configuration (policy, key file, topology) is invalid.

    ``source`` names the file and ``key`` the dotted key path inside it when known; both
    appear in ``str(error)``.
    """

    default_reply = Reply(451, "4.3.5", "gateway configuration error")
    retryable = True

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None) -> None:
        self.source = source
        self.key = key
        where = ": ".join(part for part in (source, key) if part)
        text = f"{where}: {message}" if where else message
        # The reply never names files or keys: those are for the administrator's log.
        super().__init__(text, reply=self.default_reply)


class MessageError(MailrouteError):
    """The message itself is at fault; retrying will not help."""

    default_reply = Reply(554, "5.6.0", "message content rejected")
    retryable = False


class MalformedMessageError(MessageError):
    """The message cannot be scanned or a part needed by a filter cannot be decoded."""

    default_reply = Reply(554, "5.6.0", "malformed message")


class AmbiguousMessageError(MessageError):
    """Different parsers would read the message differently (see docs/errors.md)."""

    default_reply = Reply(554, "5.6.0", "ambiguous message structure")


class UnsafeHeaderValueError(MessageError):
    """A header field mailroute was asked to write would contain CR, LF or NUL."""

    default_reply = Reply(554, "5.6.0", "unsafe header value")


class LimitExceededError(MessageError):
    """The message exceeds a configured limit; ``limit`` names which one."""

    default_reply = Reply(554, "5.6.0", "message exceeds a limit")

    def __init__(self, message: str, *, limit: str, reply: Reply | None = None) -> None:
        self.limit = limit
        if reply is None and limit == "max_message_size":
            reply = Reply(552, "5.3.4", message)
        super().__init__(message, reply=reply)


class PolicyError(MailrouteError):
    """The configured policy refuses the message."""

    default_reply = Reply(554, "5.7.1", "message refused by policy")
    retryable = False


class LoopDetectedError(PolicyError):
    """The message has already passed this gateway: delivering it again would loop."""

    default_reply = Reply(554, "5.4.6", "routing loop detected")


class CryptoError(MailrouteError):
    """A cryptographic operation failed."""

    default_reply = Reply(554, "5.7.5", "cryptographic failure")
    retryable = False


class DecryptionError(CryptoError):
    """Decryption failed. One message for every cause, so that it is no oracle."""


class SigningError(CryptoError):
    """The signing key or certificate cannot be used."""


class KeyUnavailableError(CryptoError):
    """A key is temporarily unavailable (no key may sign now, key store down)."""

    default_reply = Reply(451, "4.3.0", "signing key temporarily unavailable")
    retryable = True


class TemporaryError(MailrouteError):
    """A dependency failed for now (gpg timed out, DNS timed out): retry later."""

    default_reply = Reply(451, "4.3.0", "temporary local problem")
    retryable = True


class OutputError(TemporaryError):
    """The result could not be written in full (broken pipe, disk full, read-only directory):
    exit 75 so that the MTA keeps the message and retries."""

    default_reply = Reply(451, "4.3.0", "cannot write the result")


class ProtocolError(MailrouteError):
    """A milter or SMTP peer broke the protocol."""

    default_reply = Reply(421, "4.7.0", "protocol error")
    retryable = True


class InternalError(MailrouteError):
    """A bug or an unexpected exception; always temporary so that no mail is lost."""

    default_reply = Reply(451, "4.3.0", "internal error, try again later")
    retryable = True


class InvalidArgumentError(MailrouteError, ValueError, TypeError):
    """A value handed to mailroute's API that it does not take: a line break in an envelope
    address, a string where a list of recipients belongs, a limit that is not a positive
    integer, ``str`` where bytes belong (``Reply``, which the error classes are built on,
    raises a plain ``ValueError``). A bug in the caller or input it did not check; also a
    ``ValueError`` and a ``TypeError``, as Python's own are."""

    default_reply = Reply(501, "5.5.4", "invalid argument")
    retryable = False
