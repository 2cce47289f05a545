"""The milter protocol errors, split as h11 splits them.

:class:`RemoteProtocolError` means the MTA sent something the protocol does not allow (a
framing error, an oversized packet, a command out of order); :class:`LocalProtocolError`
means our own side tried to send something it must not (an edit outside end-of-message, a
reply nobody asked for). Either way the connection is in the ``ERROR`` state afterwards and
must be closed: no further event or byte comes out of it.
"""

from __future__ import annotations

from mailroute.errors import ProtocolError

__all__ = ["LocalProtocolError", "MilterProtocolError", "RemoteProtocolError"]


class MilterProtocolError(ProtocolError):
    """Base of the two milter protocol errors; never raised itself."""


class LocalProtocolError(MilterProtocolError):
    """Our side broke the protocol (a bug in the caller, not in the peer)."""


class RemoteProtocolError(MilterProtocolError):
    """The MTA broke the protocol; the connection must be closed."""
