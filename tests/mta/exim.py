"""A throwaway Exim 4 beside Postfix, from the Debian packages, without installing them.

``exim4-daemon-light`` conflicts with ``postfix``, so :func:`exim_root` runs ``apt-get
download`` and ``dpkg -x`` once per package version into ``/tmp/mailroute-exim-VERSION`` (a
cache the test suite reuses). Exim re-executes itself at its compiled path
``/usr/sbin/exim4``; the daemon therefore runs in a private mount namespace (``unshare -m``)
where the extracted ``usr/sbin`` is bind-mounted over ``/usr/sbin`` and an overlay on ``/etc``
lists the test configuration as trusted; the real system is never changed. The daemon is our
child; it and the processes it started (found by this instance's unique configuration path)
are stopped by PID.
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

PACKAGES = ("exim4-daemon-light", "exim4-base", "exim4-config")
EXIM_USER = "Debian-exim"


def exim_root() -> Path | None:
    """The extracted packages (``ROOT/usr/sbin/exim4``), or ``None`` when they cannot be had."""
    return extracted_packages("exim", PACKAGES, Path("usr/sbin/exim4"))


def daemon_settings(root: Path, ports: tuple[int, ...]) -> str:
    """The main-section lines every test instance needs: its users, loopback ``ports``, and
    spool, log and pid files under ``root``; no DNS or ident lookups of clients."""
    return (f"exim_user = {EXIM_USER}\nexim_group = {EXIM_USER}\nnever_users = root\n"
            f"keep_environment =\n"
            f"daemon_smtp_ports = {' : '.join(str(p) for p in ports)}\n"
            f"local_interfaces = 127.0.0.1\nspool_directory = {root}/spool\n"
            f"log_file_path = {root}/log/%slog\npid_file_path = {root}/exim.pid\n"
            f"host_lookup =\nrfc1413_hosts =\n")


def exim_available() -> bool:
    """True when Exim can be run here (root, unshare, the packages, the Exim user)."""
    try:
        import pwd
        pwd.getpwnam(EXIM_USER)
    except KeyError:
        return False
    return exim_root() is not None


def main_section(root: Path, ports: tuple[int, ...]) -> str:
    """The main section every test instance shares: :func:`daemon_settings`, and 127.0.0.1
    may relay (``acl_check_rcpt``)."""
    return ("\n" + daemon_settings(root, ports)
            + "primary_hostname = mx.corp.example\nacl_smtp_rcpt = acl_check_rcpt\n")


ACL_SECTION = """
begin acl
acl_check_rcpt:
  accept hosts = 127.0.0.1
"""


def recipe_part(recipe: Path, name: str) -> str:
    """The ``name:`` block (router or transport) of a shipped Exim recipe."""
    lines = recipe.read_text().splitlines()
    start = lines.index(f"{name}:")
    block = [lines[start]]
    for line in lines[start + 1:]:
        if not line.startswith(" "):
            break
        block.append(line)
    return "\n".join(block) + "\n"


class EximInstance:
    """One Exim daemon with its own spool and log directories under ``root``."""

    def __init__(self, root: Path, config: str) -> None:
        self.root = root
        self.config = root / "exim.conf"
        self._text = config
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, ports: tuple[int, ...], timeout: float = 30.0) -> None:
        """Write the configuration, start the daemon, wait for ``ports``."""
        binaries = exim_root()
        assert binaries is not None
        for sub in ("spool", "log"):
            (self.root / sub).mkdir(exist_ok=True)
            shutil.chown(self.root / sub, EXIM_USER, EXIM_USER)
        self.config.write_text(self._text)
        self.config.chmod(0o644)
        # Exim keeps root for deliveries only with a -C file listed in its compiled
        # TRUSTED_CONFIG_LIST (/etc/exim4/trusted_configs): an overlay on /etc, in the
        # namespace only, adds that list.
        upper, work = self.root / "etc-upper", self.root / "etc-work"
        (upper / "exim4").mkdir(parents=True, exist_ok=True)
        work.mkdir(exist_ok=True)
        (upper / "exim4" / "trusted_configs").write_text(f"{self.config}\n")
        script = (f"mount -t overlay overlay -o lowerdir=/etc,upperdir={upper},workdir={work} "
                  f"/etc && mount --bind {binaries / 'usr' / 'sbin'} /usr/sbin && "
                  f"exec /usr/sbin/exim4 -C {self.config} -bdf -q1s")
        with (self.root / "exim.stderr").open("wb") as errors:
            self._process = subprocess.Popen(["unshare", "-m", "sh", "-c", script],
                                             stdout=errors, stderr=errors,
                                             start_new_session=True)
        try:
            wait_for_ports(self._process, ports, timeout, lambda: self.log() + (
                self.root / "exim.stderr").read_text(errors="replace"))
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the daemon and every process it started, then wait until none is left."""
        process, self._process = self._process, None
        if process is None:
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # Queue runners and deliveries may have left the process group: they carry our
        # unique -C path on their command line.
        deadline = time.monotonic() + 10
        while self._children() and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in self._children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _children(self) -> list[int]:
        marker = str(self.config).encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if marker in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    def log(self) -> str:
        """The main log so far."""
        path = self.root / "log" / "mainlog"
        return path.read_text(errors="replace") if path.exists() else ""
