"""A throwaway Sendmail 8.17 beside Postfix, from the Debian packages, without installing them.

``sendmail-bin`` conflicts with ``postfix``, so the packages are extracted with
:func:`~tests.mta.common.extracted_packages` and the ``.cf`` is generated from
``sendmail-cf``'s m4 files: a daemon on a loopback port relaying everything to a smart host
(the test's sink) through one milter (``INPUT_MAIL_FILTER``, ``F=T``: tempfail when the
filter is unavailable). Sendmail sleeps a minute at start when it cannot qualify the host
name, so it runs in a private UTS namespace named ``mx.corp.example``. The milter socket is
``inet:``: Sendmail refuses a unix socket below a world-writable directory such as ``/tmp``.
The daemon is stopped by PID; nothing outside its directory is changed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.mta.common import extracted_packages, wait_for_ports

PACKAGES = ("sendmail-bin", "sendmail-base", "sendmail-cf")
BINARY = Path("usr/libexec/sendmail/sendmail")

MC = """divert(-1)
divert(0)dnl
include(`{cf}/m4/cf.m4')dnl
VERSIONID(`mailroute test')dnl
OSTYPE(`linux')dnl
define(`confDOMAIN_NAME', `mx.corp.example')dnl
define(`confDONT_PROBE_INTERFACES', `True')dnl
define(`QUEUE_DIR', `{root}/queue')dnl
define(`STATUS_FILE', `{root}/statistics')dnl
define(`confPID_FILE', `{root}/sendmail.pid')dnl
define(`ALIAS_FILE', `{root}/aliases')dnl
define(`SMART_HOST', `[127.0.0.1]')dnl
define(`RELAY_MAILER_ARGS', `TCP $h {relay}')dnl
define(`ESMTP_MAILER_ARGS', `TCP $h {relay}')dnl
define(`SMTP_MAILER_ARGS', `TCP $h {relay}')dnl
define(`confDELIVERY_MODE', `background')dnl
define(`confMILTER_MACROS_ENVFROM', `i, {{auth_type}}, {{auth_authen}}, {{mail_addr}}')dnl
FEATURE(`promiscuous_relay')dnl
FEATURE(`accept_unqualified_senders')dnl
FEATURE(`accept_unresolvable_domains')dnl
FEATURE(`nocanonify')dnl
DAEMON_OPTIONS(`Port={port}, Addr=127.0.0.1, Name=MTA')dnl
INPUT_MAIL_FILTER(`mailroute', `S=inet:{milter}@127.0.0.1, F=T, T=S:10s;R:10s;E:1m')dnl
MAILER(`smtp')dnl
"""


def sendmail_root() -> Path | None:
    """The extracted packages, or ``None`` when they cannot be had (or ``m4`` is missing)."""
    if shutil.which("m4") is None:
        return None
    return extracted_packages("sendmail", PACKAGES, BINARY)


class SendmailInstance:
    """One Sendmail daemon (``-bD``, in the foreground) with its queue under ``root``."""

    def __init__(self, packages: Path, root: Path, *, port: int, relay: int,
                 milter: int) -> None:
        self.packages, self.root, self.port = packages, root, port
        self.process: subprocess.Popen[bytes] | None = None
        (root / "queue").mkdir(parents=True, mode=0o700, exist_ok=True)
        for name in ("aliases", "statistics"):
            (root / name).touch()
        mc = MC.format(cf=packages / "usr/share/sendmail/cf", root=root, relay=relay,
                       port=port, milter=milter)
        (root / "test.mc").write_text(mc)
        with (root / "test.cf").open("w") as out:
            subprocess.run(["m4", f"-D_CF_DIR_={packages / 'usr/share/sendmail/cf'}/",
                            str(root / "test.mc")], stdout=out, stderr=subprocess.DEVNULL,
                           check=True, timeout=60)

    def start(self) -> None:
        """Start the daemon and wait for its port."""
        with (self.root / "sendmail.log").open("ab") as log:
            self.process = subprocess.Popen(
                ["unshare", "--uts", "sh", "-c", 'hostname mx.corp.example && exec "$0" "$@"',
                 str(self.packages / BINARY), "-C", str(self.root / "test.cf"), "-bD",
                 "-X", str(self.root / "smtp.trace")],
                stdout=log, stderr=subprocess.STDOUT)
        wait_for_ports(self.process, (self.port,), 60.0, self.log)

    def stop(self) -> None:
        """Stop the daemon by PID (its children exit with it)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None
        time.sleep(0.2)

    def log(self) -> str:
        """What the daemon wrote, and the SMTP trace."""
        parts = [(self.root / name) for name in ("sendmail.log", "smtp.trace")]
        return "\n".join(p.read_text(errors="replace") for p in parts if p.exists())
