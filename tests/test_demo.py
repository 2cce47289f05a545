"""``examples/demo.py`` (what ``./scripts/demo`` runs, the README's first command) shows a
verdict and a diff for every bundled message, with the exit each message should get."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_the_demo_shows_every_bundled_message_with_its_verdict(tmp_path: Path) -> None:
    copy = tmp_path / "examples"
    shutil.copytree(EXAMPLES, copy, ignore=shutil.ignore_patterns("run"))
    done = subprocess.run([sys.executable, str(copy / "demo.py")], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    verdicts = [line for line in done.stdout.splitlines() if line.startswith("=== ")]
    assert verdicts == [
        "=== 01-outbound-plain.eml: exit 0 (accepted)",
        "=== 02-outbound-alternative.eml: exit 0 (accepted)",
        "=== 03-internal.eml: exit 0 (accepted)",
        "=== 04-inbound-forged-header.eml: exit 65 (rejected: malformed (5.6.0))",
        "=== 05-inbound-forged-marker.eml: exit 0 (accepted)",
        "=== 06-outbound-signed.eml: exit 0 (accepted)",
    ]
    assert "+This e-mail is confidential." in done.stdout   # the outbound disclaimer's diff
    assert (copy / "gateway" / "run" / "marker-keys.toml").stat().st_mode & 0o077 == 0
