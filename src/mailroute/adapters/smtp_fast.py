"""aiosmtpd's ``SMTP`` session with its per-connection and per-command costs cut.

Measured on ``mailroute serve`` with an empty policy (10 KB, 10 sessions, one message per
connection as Postfix's smtp client sends them), three aiosmtpd costs were a quarter of
the CPU per message:

* ``SMTP.__init__`` looks the command, hook and AUTH methods up with ``dir``,
  ``inspect.getmembers`` and ``inspect.signature`` for every connection. What does not
  depend on the connection is computed once, from one instance built by aiosmtpd itself
  (:class:`SessionTemplate`); each connection copies it and binds its own methods.
* ``_getaddr`` parses every MAIL and RCPT address with ``email._header_value_parser``
  (and defines a ``typing.Protocol`` class per call). An address of the common form,
  ``<dot-atom@dns.name>`` in ASCII, is read with one regular expression giving exactly
  what the parser gives; everything else still goes to aiosmtpd's parser (and text
  that makes that parser itself fail, a lone ``<`` for one, is a malformed address, 553,
  instead of an internal error). Where they differ on purpose: a control character in the
  address makes it malformed (553), since the parser reads CR and TAB there as folding
  white space (``<a@x\r.example>`` was ``a@x.example``, ``<a\tb@x.example>`` was
  ``"a b"@x.example``).
* ``_reset_timeout`` cancels and schedules a timer for every command. One timer per
  connection now moves its deadline; when it fires early it sleeps again until the
  deadline.

Behaviour is aiosmtpd's: the same replies, limits and timeouts
(``tests/serve/test_smtp_fast.py`` compares both).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiosmtpd.smtp import SMTP

__all__ = ["FastSMTP", "SessionTemplate"]

# atext (RFC 5322 3.2.3) in dot-atoms; a domain of letters, digits and hyphens in dotted
# labels. The parser accepts more (quoted strings, literals, obsolete forms, UTF-8, CFWS):
# those take the slow path.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9-]+"
_SIMPLE_PATH = re.compile(rf"<({_ATEXT}(?:\.{_ATEXT})*@{_LABEL}(?:\.{_LABEL})*)>"
                          r"(?:\Z| +(?=[^\s(]))")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def has_control_character(arg: str, rest: str | None) -> bool:
    """True when the address part of ``arg`` (before the parameters ``rest``) has a control
    character: email's parser reads CR and TAB there as spaces, and gives another address."""
    return bool(_CONTROL.search(arg.removesuffix(rest or "").rstrip()))

# Attributes aiosmtpd's __init__ sets that belong to one connection (or are methods bound
# to it); every other attribute it sets is the same for all connections of a service.
_PER_CONNECTION = frozenset({
    "_timeout_handle", "_tls_handshake_okay", "_tls_protocol", "_original_transport",
    "session", "envelope", "transport", "_handler_coroutine", "_auth_methods",
    "_smtp_methods"})


class SessionTemplate:
    """What aiosmtpd's ``__init__`` computes that does not depend on the connection.

    Built once per service (inside the event loop) from one instance that aiosmtpd
    initialises itself, with the handler and settings every connection shares.
    """

    def __init__(self, cls: type[FastSMTP], handler: Any, **kwargs: Any) -> None:
        loop = asyncio.get_running_loop()
        model = cls.__new__(cls)
        SMTP.__init__(model, handler, loop=loop, **kwargs)
        base = asyncio.StreamReaderProtocol(asyncio.StreamReader(loop=loop),
                                            client_connected_cb=print, loop=loop)
        own = set(vars(base))   # what StreamReaderProtocol sets per connection
        self.loop = loop
        self.cls = cls
        self.shared = {k: v for k, v in vars(model).items()
                       if k not in own and k not in _PER_CONNECTION}
        self.smtp_methods = tuple((name, getattr(method, "__name__", ""))
                                  for name, method in model._smtp_methods.items())
        self.auth_methods = tuple((name, getattr(impl.method, "__name__", ""), impl)
                                  for name, impl in model._auth_methods.items())


class FastSMTP(SMTP):
    """An aiosmtpd ``SMTP`` set up from a :class:`SessionTemplate` (see the module text)."""

    def __init__(self, template: SessionTemplate) -> None:
        if not isinstance(self, template.cls):
            raise TypeError(f"a template for {template.cls.__name__}, not {type(self).__name__}")
        asyncio.StreamReaderProtocol.__init__(
            self, asyncio.StreamReader(loop=template.loop, limit=self.line_length_limit),
            client_connected_cb=self._cb_client_connected, loop=template.loop)
        self.__dict__.update(template.shared)
        self._timeout_handle: asyncio.TimerHandle | None = None
        self._tls_handshake_okay = True
        self._tls_protocol = None
        self._original_transport = None
        self.session = None
        self.envelope = None
        self.transport = None
        self._handler_coroutine = None
        self._smtp_methods = {name: getattr(self, attr)
                              for name, attr in template.smtp_methods}
        self._auth_methods = {name: impl._replace(method=getattr(self, attr))
                              if impl.is_builtin else impl
                              for name, attr, impl in template.auth_methods}
        self._deadline = 0.0
        self._timer_armed = False

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's address parsing, with the common ``<local@domain>`` read directly."""
        found = _SIMPLE_PATH.match(arg)
        if found is None:
            try:
                address, rest = super()._getaddr(arg)
            except (IndexError, AttributeError, NameError):
                return None, None   # email's parser failing on garbage such as "<": malformed
            if address is not None and has_control_character(arg, rest):
                return None, None
            return address, rest
        address = found.group(1)
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, arg[found.end():]

    def _reset_timeout(self, duration: float | None = None) -> None:
        """Move the deadline; schedule a timer only when none is pending before it."""
        deadline = self.loop.time() + (duration or self._timeout_duration)
        handle = self._timeout_handle
        self._deadline = deadline
        if handle is not None and self._timer_armed and handle.when() <= deadline:
            return
        if handle is not None:
            handle.cancel()
        self._timer_armed = True
        self._timeout_handle = self.loop.call_at(deadline, self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer_armed = False
        if self.loop.time() < self._deadline:
            self._timer_armed = True
            self._timeout_handle = self.loop.call_at(self._deadline, self._timer_fired)
            return
        self._timeout_cb()  # type: ignore[no-untyped-call]
