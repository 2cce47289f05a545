"""`mailroute marker keygen|rotate|status`: key files the gateway accepts, rotation that keeps
markers minted a moment ago verifiable, status that says which key mints."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mailroute.cli import main
from mailroute.marker.keyring import load_key_ring
from tests.marker.helpers import DAY, HOUR, MESSAGE, NOW

MAILROUTE = [sys.executable, "-m", "mailroute"]


def _marker(keys: Path, action: str, *extra: str, data: bytes = MESSAGE
            ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*MAILROUTE, "marker", action, "--key-file", str(keys), *extra],
                          input=data, capture_output=True, timeout=60, check=False)


def test_keygen_writes_a_0600_key_file_the_gateway_loads(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    assert main(["marker", "keygen", "--key-file", str(keys), "--org-id", "example.net",
                 "--tag", "g7k2qd", "--now", str(NOW)]) == 0
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    ring = load_key_ring(keys)
    assert (ring.tag, ring.org_id, [k.kid for k in ring.keys]) == ("g7k2qd", "example.net",
                                                                    ["k260921"])
    assert ring.signing_key(NOW).kid == "k260921"


@pytest.mark.parametrize("org_id", ["ex\nample", "ex\rample", ""])
def test_keygen_refuses_an_org_id_the_key_file_cannot_hold_as_a_usage_error(
        tmp_path: Path, org_id: str) -> None:
    """Found by the marker audit: a LF in --org-id was an internal error (75)."""
    keys = tmp_path / "keys.toml"
    assert main(["marker", "keygen", "--key-file", str(keys), "--org-id", org_id]) == 2
    assert not keys.exists()


def test_keygen_writes_control_characters_and_quotes_of_an_org_id_so_they_read_back(
        tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    org_id = 'ex\x01am"ple\\\t'
    assert main(["marker", "keygen", "--key-file", str(keys), "--org-id", org_id]) == 0
    assert load_key_ring(keys).org_id == org_id


def test_keygen_never_overwrites_and_makes_distinct_secrets(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = tmp_path / "a.toml", tmp_path / "b.toml"
    for path in (first, second):
        assert main(["marker", "keygen", "--key-file", str(path), "--org-id", "x.example"]) == 0
    before = first.read_bytes()
    assert main(["marker", "keygen", "--key-file", str(first), "--org-id", "x.example"]) == 78
    assert "exists already" in capsys.readouterr().err
    assert first.read_bytes() == before
    secret = [line for line in before.decode().splitlines() if line.startswith("secret")]
    assert secret[0] not in second.read_text()


def test_keygen_refuses_a_bad_tag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["marker", "keygen", "--key-file", str(tmp_path / "k.toml"), "--org-id", "x",
                 "--tag", "UPPER1"]) == 78
    assert "tag must be 6 characters" in capsys.readouterr().err
    assert not (tmp_path / "k.toml").exists()


def test_rotate_keeps_markers_of_the_old_key_verifiable_for_the_loop_window(
        tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    assert main(["marker", "keygen", "--key-file", str(keys), "--org-id", "example.net",
                 "--now", str(NOW)]) == 0
    marked = _marker(keys, "set", "--now", str(NOW + DAY))
    assert marked.returncode == 0, marked.stderr
    assert main(["marker", "rotate", "--key-file", str(keys), "--now", str(NOW + DAY + 60)]) == 0
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    ring = load_key_ring(keys)
    assert [k.kid for k in ring.keys] == ["k260921", "k260922"]
    assert ring.signing_key(NOW + DAY + 61).kid == "k260922"       # the new key mints
    # the marker the old key minted just before still verifies within the keep window ...
    inside = _marker(keys, "verify", "--json", "--now", str(NOW + DAY + 120),
                     data=marked.stdout)
    assert json.loads(inside.stdout)["key_id"] == "k260921"
    assert inside.returncode == 0
    # ... and no longer after it (3600 s by default)
    after = _marker(keys, "verify", "--json", "--now", str(NOW + DAY + 60 + HOUR + 1),
                    data=marked.stdout)
    assert (after.returncode, json.loads(after.stdout)["verdict"]) == (1, "unknown-key")
    # a second rotation after the keep window drops the retired key
    assert main(["marker", "rotate", "--key-file", str(keys), "--id", "next1",
                 "--now", str(NOW + 3 * DAY)]) == 0
    assert [k.kid for k in load_key_ring(keys).keys] == ["k260922", "next1"]


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_rotate_as_root_keeps_the_service_users_ownership(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    assert main(["marker", "keygen", "--key-file", str(keys), "--org-id", "x.example"]) == 0
    os.chown(keys, 65534, 65534)
    assert main(["marker", "rotate", "--key-file", str(keys)]) == 0
    info = keys.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (65534, 65534, 0o600)


def test_rotate_refuses_an_unsafe_key_file_and_leaves_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "keys.toml"
    assert main(["marker", "keygen", "--key-file", str(keys), "--org-id", "x.example"]) == 0
    keys.chmod(0o644)
    before = keys.read_bytes()
    assert main(["marker", "rotate", "--key-file", str(keys)]) == 78
    assert "group or others" in capsys.readouterr().err
    assert keys.read_bytes() == before


def test_status_lists_ids_ages_and_the_minting_key(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    assert main(["marker", "keygen", "--key-file", str(keys), "--org-id", "example.net",
                 "--tag", "g7k2qd", "--now", str(NOW)]) == 0
    assert main(["marker", "rotate", "--key-file", str(keys), "--now", str(NOW + DAY)]) == 0
    done = _marker(keys, "status", "--json", "--now", str(NOW + DAY + 600))
    assert done.returncode == 0
    report = json.loads(done.stdout)
    assert report["signing"] == "k260922"
    assert [(k["id"], k["state"], k["age_seconds"]) for k in report["keys"]] == [
        ("k260921", "verify only", DAY + 600), ("k260922", "signing", 600)]
    text = _marker(keys, "status", "--now", str(NOW + DAY + 600)).stdout.decode()
    assert "k260922   signing" in text
    assert "secret" not in text
    # past every window: no key may sign, exit 1 with a warning
    late = tmp_path / "late.toml"
    late.write_text('tag = "g7k2qd"\norg_id = "x"\n[[key]]\nid = "old"\n'
                    'secret = "QS1zZWNyZXQtdGhhdC1tdXN0LW5ldmVyLWxlYWstMDE="\n'
                    "sign_until = 2020-01-01T00:00:00Z\n")
    late.chmod(0o600)
    done = _marker(late, "status", "--now", str(NOW))
    assert done.returncode == 1
    assert done.stderr.decode().startswith("warning: no key may sign now")
    assert "old       verify only" in done.stdout.decode()   # no verify_until: verifies on
