"""A filter whose behaviour a test switches at run time, and a milter runner that knows it.

``python -m tests.faults.faulty milter --config ...`` runs ``mailroute`` with one extra
filter, ``fault``, registered: each message reads the control file named by its ``control``
option and does what it says:

* ``ok`` (or no file): pass the message on with an ``X-Fault: passed`` field;
* ``raise``: raise ``RuntimeError`` (a bug in a filter);
* ``memory``: raise ``MemoryError``;
* ``sleep SECONDS``: sleep, then pass (a filter slower than the MTA's milter timeout).

``MAILROUTE_TEST_DNS=HOST:PORT`` makes DNS lookups ask that server (a loopback test server
standing in for public DNS).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mailroute.config.options import Options
from mailroute.item import Context, MailItem
from mailroute.results import Outcome


@dataclass(frozen=True, slots=True)
class FaultFilter:
    """Does what the control file says (see the module docstring)."""

    control: Path
    name: str = "fault"

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        """Pass, raise or sleep."""
        try:
            order = self.control.read_text().split()
        except FileNotFoundError:
            order = []
        if order[:1] == ["raise"]:
            raise RuntimeError("injected fault")
        if order[:1] == ["memory"]:
            raise MemoryError
        if order[:1] == ["sleep"]:
            time.sleep(float(order[1]))
        return item.evolve(message=item.message.with_header("X-Fault", "passed"))


def build(options: Options) -> FaultFilter:
    """``fault`` from ``control`` (a path)."""
    return FaultFilter(options.path("control"))


def _use_test_dns(server: str) -> None:
    from mailroute.dkim import dns as dkim_dns

    host, _, port = server.rpartition(":")
    original = dkim_dns.DnsLookup.__init__

    def init(self: dkim_dns.DnsLookup, timeout: float, **kwargs: object) -> None:
        original(self, timeout, nameservers=[host], port=int(port))

    dkim_dns.DnsLookup.__init__ = init  # type: ignore[method-assign]


def main() -> int:
    """Run the ``mailroute`` command line with ``fault`` registered."""
    from mailroute.cli import main as cli_main
    from mailroute.policy import FILTERS

    FILTERS["fault"] = ("tests.faults.faulty", "build", None)
    if os.environ.get("MAILROUTE_TEST_DNS"):
        _use_test_dns(os.environ["MAILROUTE_TEST_DNS"])
    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
