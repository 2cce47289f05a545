"""docs/integrations/milter.md: the Postfix settings read as the page explains them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.docs.blocks import blocks

PAGE = Path(__file__).resolve().parents[2] / "docs" / "integrations" / "milter.md"


def test_the_main_cf_block_gives_postfix_exactly_these_values(tmp_path: Path) -> None:
    """A comment after a value is part of the value in main.cf (the page's block had
    ``# 1`` ... ``# 5`` behind its lines: Postfix refused every client)."""
    assert shutil.which("postconf"), "Postfix is installed by scripts/setup-system"
    block = next(b.text for b in blocks(PAGE) if b.text.startswith("# /etc/postfix/main.cf"))
    (tmp_path / "main.cf").write_text(block)
    done = subprocess.run(["postconf", "-c", str(tmp_path), "-n"], capture_output=True,
                          text=True, check=True)
    settings = {name.strip(): value.strip() for name, _, value in
                (line.partition("=") for line in done.stdout.splitlines())}
    settings.pop("config_directory", None)   # postconf -c names the folder it read
    assert settings == {
        "smtpd_milters": "unix:/mailroute/milter.sock",   # inside the chroot
        "milter_default_action": "tempfail",
        "milter_protocol": "6",
        "milter_content_timeout": "300s",
        "non_smtpd_milters": "",
    }
