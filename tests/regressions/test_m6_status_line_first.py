"""M6: an internal error (MemoryError, a bug) prints one ``4.3.0`` status line first and no
traceback unless ``-v``; exit 75.

Before, ``log.exception`` wrote about 36 traceback lines ahead of the status line, so Postfix
pipe(8), which reads the first line, saw no enhanced status code.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.regressions.helpers import big_message, empty_policy, first_line

STATUS = re.compile(r"4\.3\.0 internal error, reference [0-9a-f]{12}\Z")

# The address space is capped a little above what the interpreter holds after the imports, so
# reading the message (a buffer of max_message_size) raises MemoryError: `ulimit -v` measured
# from inside, independent of how large this machine's interpreter happens to be.
UNDER_ULIMIT = """
import resource, sys
from mailroute.cli import main
import mailroute.commands.process, mailroute.pipeline, mailroute.mime
with open("/proc/self/status") as status:
    size = next(int(l.split()[1]) for l in status if l.startswith("VmSize:")) * 1024
resource.setrlimit(resource.RLIMIT_AS, (size + 24 * 2**20, resource.RLIM_INFINITY))
sys.exit(main(sys.argv[1:]))
"""

# A bug inside the session: the scanner raises. The session turns it into a tempfail result.
BUG_IN_PIPELINE = """
import sys
import mailroute.session
def broken(*args, **kwargs):
    raise ZeroDivisionError("a bug")
mailroute.session.parse = broken
from mailroute.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _run(script: str, args: list[str], data: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-c", script, *args], input=data,
                          capture_output=True, timeout=120, check=False)


@pytest.mark.parametrize("script", [UNDER_ULIMIT, BUG_IN_PIPELINE], ids=["memory", "bug"])
def test_internal_error_prints_the_status_line_first_and_no_traceback(
        tmp_path: Path, script: str) -> None:
    done = _run(script, ["process", "--config", str(empty_policy(tmp_path))],
                big_message(3 * 1024 * 1024))
    assert done.returncode == 75
    assert STATUS.match(first_line(done.stderr)), done.stderr[:500]
    assert done.stderr.count(b"\n") == 1
    assert done.stdout == b""


@pytest.mark.parametrize("script", [UNDER_ULIMIT, BUG_IN_PIPELINE], ids=["memory", "bug"])
def test_verbose_adds_the_traceback(tmp_path: Path, script: str) -> None:
    done = _run(script, ["-v", "process", "--config", str(empty_policy(tmp_path))],
                big_message(3 * 1024 * 1024))
    assert done.returncode == 75
    text = done.stderr.decode()
    assert "Traceback (most recent call last)" in text
    assert re.search(r"^4\.3\.0 internal error, reference [0-9a-f]{12}$", text, re.M)
    assert ("MemoryError" if script is UNDER_ULIMIT else "ZeroDivisionError") in text
