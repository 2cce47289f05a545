"""A throwaway Postfix on 127.0.0.1 high ports, with its own config and queue directories.

``PostfixInstance(root, main, master).start()`` writes ``main.cf``/``master.cf`` under
``root/etc``, runs ``postfix -c DIR start-fg`` (the master is our child: stopped by PID, never
by name) and waits for the smtpd ports. The log goes to ``root/maillog`` (``maillog_file =
/dev/stdout`` of the foreground master). Nothing outside ``root`` is touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.mta.common import wait_for_ports, wait_until

#: The services every instance needs besides its smtpd lines (chroot off everywhere; tlsmgr
#: for the milter tests' TLS listener).
BASE_MASTER = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def master_block(master_cf: Path, name: str) -> str:
    """The ``name`` service of a shipped ``master.cf`` with its continuation lines."""
    lines = master_cf.read_text().splitlines()
    start = next(n for n, line in enumerate(lines) if line.split()[:1] == [name])
    block = [lines[start]]
    for line in lines[start + 1:]:
        if not line[:1].isspace():
            break
        block.append(line)
    return "\n".join(block) + "\n"


def postfix_available() -> bool:
    """True when the Postfix binaries are installed and we are root (Postfix needs it)."""
    return shutil.which("postfix") is not None and os.geteuid() == 0


class PostfixInstance:
    """One Postfix master with its own directories under ``root``."""

    def __init__(self, root: Path, main: dict[str, str], master: str) -> None:
        self.root = root
        self.config = root / "etc"
        self.maillog = root / "maillog"
        self._main = {
            "compatibility_level": "3.6",
            "queue_directory": str(root / "spool"),
            "data_directory": str(root / "data"),
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mydestination": "",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "alias_maps": "",
            "alias_database": "",
            "maillog_file": "/dev/stdout",
            "in_flow_delay": "0",
            "smtp_host_lookup": "native",
            "disable_dns_lookups": "yes",
            **main,
        }
        self._master = master + BASE_MASTER
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, ports: tuple[int, ...], timeout: float = 30.0) -> None:
        """Write the configuration, start the master, wait for ``ports`` to listen."""
        for sub in (self.config, self.root / "spool", self.root / "data"):
            sub.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.root / "data", "postfix")
        (self.config / "main.cf").write_text(
            "".join(f"{key} = {value}\n" for key, value in self._main.items()))
        (self.config / "master.cf").write_text(self._master)
        with self.maillog.open("wb") as errors:
            self._process = subprocess.Popen(
                ["postfix", "-c", str(self.config), "start-fg"], stdout=errors,
                stderr=errors, start_new_session=True)
        try:
            wait_for_ports(self._process, ports, timeout, lambda: self.log()[-2000:])
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the master (and with it every Postfix process it started)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        subprocess.run(["postfix", "-c", str(self.config), "stop"], capture_output=True,
                       timeout=30, check=False)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)

    def flush(self) -> None:
        """``postqueue -f``: retry every queued message now (what an administrator runs after
        fixing a fault)."""
        subprocess.run(["postqueue", "-c", str(self.config), "-f"], check=True,
                       capture_output=True, timeout=30)

    def log(self) -> str:
        """The instance's mail log so far."""
        return self.maillog.read_text(errors="replace") if self.maillog.exists() else ""

    def queue_is_empty(self) -> bool:
        """True when no message is in the incoming, active or deferred queue."""
        spool = self.root / "spool"
        return not any(f.is_file() for name in ("incoming", "active", "deferred", "maildrop")
                       for f in (spool / name).rglob("*"))

    def wait_until(self, predicate: Callable[[], object], timeout: float = 30.0) -> bool:
        """Poll ``predicate()`` until it is true or ``timeout`` passes."""
        return wait_until(predicate, timeout)
