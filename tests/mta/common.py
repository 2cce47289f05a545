"""What the MTA tests share: free ports, a ``mailroute`` command the filter user can run, and
Debian packages extracted beside the installed ones (an MTA that conflicts with Postfix)."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from mailroute.testing import write_fake_key_file

#: The unprivileged account the MTAs run ``mailroute pipe`` as (they refuse root).
FILTER_USER = "nobody"


@contextlib.contextmanager
def scratch_root(prefix: str, keep_variable: str) -> Iterator[Path]:
    """A directory for one throwaway server (mode 0755: the filter user reads from it),
    removed afterwards unless ``keep_variable`` is set in the environment."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    try:
        yield root
    finally:
        if not os.environ.get(keep_variable):
            shutil.rmtree(root, ignore_errors=True)


#: Ports this test process handed out: the kernel may give a port that was just released to
#: the next bind(0), and two servers of one setup then share a port (Postfix kept the last of
#: two master.cf services on it, and the content filter was bypassed).
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free on 127.0.0.1 right now, never one this process handed out before."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def _reachable(path: Path) -> bool:
    """True when an unprivileged user can reach ``path`` (every parent searchable by others)."""
    return all(os.stat(parent).st_mode & stat.S_IXOTH for parent in path.resolve().parents)


def _filter_user_copy(root: Path) -> str:
    """A copy, under ``root``, of mailroute and the installed packages it loaded.

    A checkout under a private directory (``mktemp -d``, ``/root``) cannot be read by the
    filter user; an installed mailroute would sit in a readable place, so the tests give it
    one. Only what this process imported from outside the standard library is copied.
    """
    for needed in ("mailroute.commands.pipe", "mailroute.filters.headers",
                   "mailroute.filters.marker", "mailroute.filters.smime",
                   "mailroute.gateway.sqlite_store"):
        importlib.import_module(needed)  # what ``mailroute pipe`` loads for the test policy

    stdlib = Path(os.__file__).resolve().parent
    target = root / "lib"
    target.mkdir(mode=0o755, exist_ok=True)
    entries = sorted({Path(p).resolve() for p in sys.path if p and Path(p).is_dir()},
                     key=lambda e: len(e.parts), reverse=True)  # the deepest entry first
    tops: set[Path] = set()
    for module in list(sys.modules.values()):
        origin = getattr(module, "__file__", None)
        if not origin or Path(origin).resolve().is_relative_to(stdlib):
            continue
        found = Path(origin).resolve()
        entry = next((e for e in entries if found.is_relative_to(e)), None)
        if entry is not None and entry != stdlib:
            tops.add(entry / found.relative_to(entry).parts[0])
    for top in tops:
        copy = target / top.name
        if copy.exists():
            continue
        if top.is_dir():
            shutil.copytree(top, copy, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(top, copy)
    for path in [target, *target.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644 | (path.stat().st_mode & 0o111))
    return str(target)


def interpreter_wrapper(root: Path) -> Path:
    """A ``mailroute`` command the filter user can run (the venv may sit under /root)."""
    python = sys.executable
    runnable = os.access(python, os.X_OK) and _reachable(Path(python))
    if not runnable:
        python = shutil.which("python3", path="/usr/bin:/usr/local/bin") or python
    import mailroute

    paths = [p for p in sys.path if p and Path(p).is_dir()]
    needed = [Path(mailroute.__file__), *(Path(p, "_") for p in paths if "site-packages" in p)]
    if not all(_reachable(path) for path in needed):
        paths = [_filter_user_copy(root)]
    wrapper = root / "mailroute"
    search = ":".join(paths)
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="{search}" exec {python} -m mailroute "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def pipe_policy(folder: Path, *, owner: str | None = None, tempfail_key: Path | None = None,
                smime_identity: tuple[Path, Path] | None = None) -> Path:
    """The policy the pipe tests run, written to ``folder/policy.toml``.

    ``marker-verify`` (the loop guard, with the SQLite store in ``folder/state``), a second
    ``marker-verify`` that refuses mail from ``reject@corp.example`` (no marker: 5.7.1), when
    ``tempfail_key`` is given a ``marker-set`` with that key for ``tempfail@corp.example``,
    when ``smime_identity`` (certificate, key) is given an ``smime-decrypt`` that quarantines
    what it cannot decrypt for ``quarantine@corp.example``, a header ``X-Processed:
    mailroute``, and ``marker-set``. ``owner`` (the filter user) gets the key files and the
    state directory.
    """
    key = write_fake_key_file(folder / "keys.toml")
    state = folder / "state"
    state.mkdir(mode=0o700)
    if owner is not None:
        shutil.chown(key, owner)
        shutil.chown(state, owner)
    extra = "" if tempfail_key is None else f'''
[[pipeline]]
filter = "marker-set"
key_file = "{tempfail_key}"
[pipeline.when]
sender = ["tempfail@corp.example"]
'''
    if smime_identity is not None:
        cert, smime_key = smime_identity
        if owner is not None:
            shutil.chown(smime_key, owner)
        extra += f'''
[[pipeline]]
filter = "smime-decrypt"
cert = "{cert}"
key = "{smime_key}"
on_failure = "quarantine"
[pipeline.when]
sender = ["quarantine@corp.example"]
'''
    policy = folder / "policy.toml"
    policy.write_text(f'''
[gateway]
internal_domains = ["corp.example"]
state_dir = "{state}"

[[pipeline]]
filter = "marker-verify"
key_file = "{key}"

[[pipeline]]
filter = "marker-verify"
key_file = "{key}"
on_missing = "reject"
[pipeline.when]
sender = ["reject@corp.example", "reject-me@partner.example"]
{extra}
[[pipeline]]
filter = "headers"
add = {{ X-Processed = "mailroute" }}

[[pipeline]]
filter = "marker-set"
key_file = "{key}"
''')
    policy.chmod(0o644)
    return policy


def wait_until(predicate: Callable[[], object], timeout: float = 30.0) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` passes; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


def wait_for_ports(process: subprocess.Popen[bytes], ports: tuple[int, ...], timeout: float,
                   describe: Callable[[], str]) -> None:
    """Wait until ``ports`` accept connections on 127.0.0.1.

    Raises:
        RuntimeError: ``process`` exited first, or the time ran out (``describe()`` says why).
    """
    deadline = time.monotonic() + timeout
    waiting = set(ports)
    while waiting and time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited: {describe()}")
        for port in list(waiting):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    waiting.discard(port)
        time.sleep(0.05)
    if waiting:
        raise RuntimeError(f"nothing listens on {sorted(waiting)}: {describe()}")


def _candidate_version(package: str) -> str | None:
    try:
        out = subprocess.run(["apt-cache", "policy", package], capture_output=True,
                             text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        if line.strip().startswith("Candidate:"):
            version = line.split(":", 1)[1].strip()
            return None if version == "(none)" else version
    return None


def extracted_packages(name: str, packages: tuple[str, ...], binary: Path) -> Path | None:
    """``packages`` (``apt-get download`` + ``dpkg -x``, nothing installed) under
    ``/tmp/mailroute-NAME-VERSION``, a cache the test suite reuses; ``None`` when they cannot
    be had (not root, no ``unshare``, no network). ``binary`` (relative) must be in them."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return None
    version = _candidate_version(packages[0])
    if version is None:
        return None
    root = Path(tempfile.gettempdir()) / f"mailroute-{name}-{version.replace(':', '_')}"
    if (root / binary).is_file():
        return root
    work = Path(tempfile.mkdtemp(prefix=f"mailroute-{name}-dl-"))
    try:
        os.chmod(work, 0o755)  # noqa: S103 - apt's _apt user writes the downloads
        got = subprocess.run(["apt-get", "download", "-q", *packages], cwd=work,
                             capture_output=True, timeout=300, check=False)
        debs = sorted(work.glob("*.deb"))
        if got.returncode != 0 or len(debs) != len(packages):
            return None
        staging = Path(tempfile.mkdtemp(prefix=f"mailroute-{name}-x-"))
        for deb in debs:
            subprocess.run(["dpkg", "-x", str(deb), str(staging)], check=True,
                           capture_output=True, timeout=120)
        os.chmod(staging, 0o755)  # noqa: S103 - the filter user runs nothing from here
        try:
            staging.rename(root)          # atomic: a parallel run sees all or nothing
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
        return root if (root / binary).is_file() else None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ambiguous_message(subject: str) -> bytes:
    """A message every policy refuses (554 5.6.0: two Content-Type fields), from
    a@corp.example to e@partner.example, with Message-ID ``<SUBJECT@corp.example>``."""
    return (f"From: <a@corp.example>\r\nTo: <e@partner.example>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@corp.example>\r\nContent-Type: multipart/mixed\r\n"
            "Content-Type: text/plain\r\n\r\nambiguous\r\n").encode()
