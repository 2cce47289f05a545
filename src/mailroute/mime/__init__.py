"""The byte-preserving MIME tree.

``parse(data).to_bytes() == data`` for every input that parses; edits return new messages
that share every untouched part, and untouched parts are emitted from the original bytes.
"""

from mailroute.mime.defects import AMBIGUOUS_DEFECTS, Defect, DefectKind
from mailroute.mime.headers import HeaderBlock, HeaderField, make_field, parse_addresses
from mailroute.mime.message import Message, Path, build_leaf, new_boundary
from mailroute.mime.params import ContentType, parse_content_type, parse_parameters
from mailroute.mime.part import LeafBody, MultipartBody, Part, Span
from mailroute.mime.scan import AmbiguityPolicy, parse
from mailroute.mime.text import decode_text
from mailroute.mime.transfer import Decoded, decode_payload, encode_payload

__all__ = [
    "AMBIGUOUS_DEFECTS",
    "AmbiguityPolicy",
    "ContentType",
    "Decoded",
    "Defect",
    "DefectKind",
    "HeaderBlock",
    "HeaderField",
    "LeafBody",
    "Message",
    "MultipartBody",
    "Part",
    "Path",
    "Span",
    "build_leaf",
    "decode_payload",
    "decode_text",
    "encode_payload",
    "make_field",
    "new_boundary",
    "parse",
    "parse_addresses",
    "parse_content_type",
    "parse_parameters",
]
