"""A copy of mailroute with the milter's hot path compiled by mypyc, to measure what compiling
would buy (benchmarks/milter.py's ``*-mypyc`` configurations run their milter from it).

This is a measurement, not a way to install mailroute: the package stays pure Python. The
build copies ``src/mailroute`` into a directory and compiles the modules a message passes
through on its way through the disclaimer milter (the protocol, the adapter, the MIME scan,
the disclaimer); ``PYTHONPATH=DIR`` then imports the compiled modules first. It needs a C
compiler and mypy (the dev extra), and takes about 40 seconds.

    .venv/bin/python benchmarks/mypyc_build.py DIR
    PYTHONPATH=DIR .venv/bin/python -m mailroute milter --config ... --socket ...
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "mailroute"
#: The modules compiled: those with more than a microsecond per message in a profile of the
#: disclaimer milter (tests/adapters/milter_recordings.py's conversation, 20,000 times), but
#: mailroute/item.py: mypyc cannot compile its runtime-checkable protocol.
COMPILED = (
    "protocols/milter/framing.py", "protocols/milter/connection.py",
    "protocols/milter/actions.py", "protocols/milter/events.py",
    "adapters/milter.py", "adapters/milter_map.py", "adapters/messagelog.py",
    "mime/headers.py", "mime/scan.py", "mime/part.py", "mime/message.py", "mime/edits.py",
    "mime/transfer.py", "mime/charsets.py", "mime/params.py",
    "disclaimer/insert.py", "disclaimer/splice.py", "disclaimer/select.py",
    "disclaimer/template.py", "disclaimer/textplace.py",
    "filters/disclaimer.py", "session.py", "pipeline.py",
)


def build(target: Path) -> Path | None:
    """``target`` holding the compiled copy (made afresh), or ``None`` when it cannot be
    built here (the reason on stderr)."""
    if not (shutil.which("cc") or shutil.which("gcc")):
        print("# no C compiler: no mypyc build", file=sys.stderr)
        return None
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    shutil.copytree(SOURCE, target / "mailroute",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    done = subprocess.run([sys.executable, "-m", "mypyc",
                           *(f"mailroute/{module}" for module in COMPILED)],
                          cwd=target, capture_output=True, text=True, check=False)
    if done.returncode:
        print(f"# mypyc failed: {(done.stdout + done.stderr).strip()[-1500:]}", file=sys.stderr)
        return None
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", type=Path, help="the directory to build into (replaced)")
    args = parser.parse_args()
    built = build(args.target)
    if built is None:
        return 1
    print(f"{len(COMPILED)} modules compiled into {built}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
