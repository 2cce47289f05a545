"""mailroute.logs: the logging module is loaded only for a record that can be shown."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from mailroute.logs import LazyLogger
from mailroute.testing import build_message
from tests.marker.helpers import write_key_file

FRESH = """
import sys
from mailroute import logs
logs.configure(level="WARNING", stream=sys.stderr, format="mailroute: %(levelname)s %(message)s")
log = logs.LazyLogger("mailroute.test")
log.debug("a debug record %s", 1)
log.info("an info record %s", 2)
print("before-warning", "logging" in sys.modules)
log.warning("a warning %s", 3)
print("after-warning", "logging" in sys.modules)
log.info("an info record after %s", 4)
"""


def _fresh(source: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", source, *args], capture_output=True,
                          text=True, timeout=60, check=False)


def test_info_and_debug_do_not_load_logging_and_a_warning_is_shown_configured() -> None:
    done = _fresh(FRESH)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["before-warning", "False", "after-warning", "True"]
    assert done.stderr == "mailroute: WARNING a warning 3\n"


def test_configure_now_loads_logging_and_shows_info() -> None:
    done = _fresh("import sys\nfrom mailroute import logs\n"
                  "logs.configure(now=True, level='INFO', stream=sys.stderr,\n"
                  "               format='%(message)s')\n"
                  "logs.LazyLogger('mailroute.x').info('shown %s', 'yes')\n")
    assert (done.returncode, done.stderr) == (0, "shown yes\n")


def test_once_logging_is_loaded_records_reach_its_handlers(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="mailroute.test")
    log = LazyLogger("mailroute.test")
    log.debug("d %s", 1)
    log.info("i %s", 2)
    log.warning("w %s", 3)
    log.error("e %s", 4)
    assert [(r.levelname, r.getMessage(), r.funcName) for r in caplog.records] == [
        ("DEBUG", "d 1", "test_once_logging_is_loaded_records_reach_its_handlers"),
        ("INFO", "i 2", "test_once_logging_is_loaded_records_reach_its_handlers"),
        ("WARNING", "w 3", "test_once_logging_is_loaded_records_reach_its_handlers"),
        ("ERROR", "e 4", "test_once_logging_is_loaded_records_reach_its_handlers"),
    ]


PROBE = """
import sys
from mailroute.cli import main
code = main(sys.argv[1:])
sys.stderr.write(f"LOGGING-LOADED {'logging' in sys.modules}\\n")
sys.exit(code)
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_the_command_line_loads_logging_only_with_verbose(tmp_path: Path, verbose: bool) -> None:
    keys = write_key_file(tmp_path)
    args = ["-v"] * verbose + ["marker", "set", "--key-file", str(keys)]
    done = subprocess.run([sys.executable, "-c", PROBE, *args], input=build_message(),
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.decode().splitlines()
    if verbose:
        assert lines == ["mailroute: INFO marker minted with key k1", "LOGGING-LOADED True"]
    else:
        assert lines == ["LOGGING-LOADED False"]


@pytest.mark.parametrize(("command_line", "propagates"), [(False, True), (True, False)])
def test_the_gnupg_logger_is_left_alone_unless_the_command_line_owns_logging(
        command_line: bool, propagates: bool) -> None:
    """Found by the API audit: loading a pgp policy made python-gnupg's logger stop
    propagating in the host application too."""
    script = ("import logging, mailroute.logs\n"
              + ("mailroute.logs.configure(level='WARNING')\n" if command_line else "")
              + "import mailroute.pgp.runner\n"
              + "print(logging.getLogger('gnupg').propagate)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == str(propagates)
