"""``mailroute keys``: every action through the real command, text and --json output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.pgp.world import PgpWorld
from tests.smime.pki import Pki


def _policy(tmp_path: Path) -> Path:
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[gateway]\nstate_dir = "{tmp_path / "state"}"\n[crypto]\n')
    return policy


def keys(policy: Path, *args: str, code: int = 0) -> str:
    done = subprocess.run([sys.executable, "-m", "mailroute", "keys", *args, "--config",
                           str(policy)], capture_output=True, timeout=120)
    assert done.returncode == code, done.stderr.decode()
    return done.stdout.decode()


def keys_json(policy: Path, *args: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(keys(policy, *args, "--json"))
    assert document["version"] == 1
    return document


def test_import_list_show_export_remove_a_certificate(pki: Pki, tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    imported = keys_json(policy, "import", str(pki.alice.cert_path))
    ((entry),) = imported["imported"]
    assert entry["address"] == "alice@example.org"
    assert entry["state"] == "active"
    fpr = entry["fingerprint"]
    listed = keys_json(policy, "list")["keys"]
    assert [(k["address"], k["kind"], k["trust"], k["state"], k["pinned"])
            for k in listed] == [("alice@example.org", "smime", "manual", "active", False)]
    assert set(listed[0]) == {"fingerprint", "address", "kind", "trust", "state", "pinned",
                              "revoked", "not_before", "not_after", "capabilities",
                              "preferred", "source", "first_seen", "last_seen"}
    shown = keys_json(policy, "show", fpr[:12])
    assert "CN=alice" in shown["details"]["subject"]
    out = tmp_path / "alice.pem"
    keys(policy, "export", fpr, "--out", str(out))
    assert out.read_bytes() == pki.alice.cert_path.read_bytes()
    text = keys(policy, "list")
    assert text.startswith(f"{fpr[:16]} alice@example.org smime manual active - ")
    assert keys_json(policy, "remove", fpr) == {"version": 1, "fingerprint": fpr,
                                                "result": "removed"}
    assert keys_json(policy, "list")["keys"] == []


def test_pin_hold_release_and_trust(pki: Pki, tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    first = keys_json(policy, "import", str(pki.alice.cert_path), "--pin")
    old = first["imported"][0]["fingerprint"]
    # another certificate for the same address while the first is pinned: held
    from tests.smime.pki import issue
    newer = issue(tmp_path, "alice2", issuer=pki.issuing, email="alice@example.org")
    second = keys_json(policy, "import", str(newer.cert_path))
    new = second["imported"][0]["fingerprint"]
    assert second["imported"][0]["state"] == "held"
    keys(policy, "release", new, code=1)  # pinned: refused, exit 1
    assert keys_json(policy, "pin", old, "--off")["result"] == "unpinned"
    assert keys_json(policy, "release", new)["result"] == "released"
    states = {k["fingerprint"]: k["state"] for k in keys_json(policy, "list")["keys"]}
    assert states == {old: "retired", new: "active"}
    keys(policy, "trust", new, "verified")
    assert keys_json(policy, "show", new)["keys"][0]["trust"] == "verified"
    keys(policy, "hold", new)
    assert keys_json(policy, "show", new)["keys"][0]["state"] == "held"


def test_import_an_openpgp_key(pgp_world: PgpWorld, tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    exported = tmp_path / "alice.asc"
    exported.write_bytes(subprocess.run(
        ["gpg", "--homedir", str(pgp_world.peer), "--batch", "--armor", "--export",
         "alice@example.org"], check=True, capture_output=True, timeout=60).stdout)
    imported = keys_json(policy, "import", str(exported), "--address", "alice@example.org")
    assert imported["imported"] == [{"fingerprint": pgp_world.alice,
                                     "address": "alice@example.org", "kind": "pgp",
                                     "state": "active"}]


@pytest.mark.parametrize(("args", "code", "message"), [
    (("show", "deadbeefdeadbeef"), 1, "no key deadbeefdeadbeef"),
    (("show", "xyz"), 1, "not a fingerprint"),
    (("release", "0123456789abcdef"), 1, "no key"),
])
def test_errors(tmp_path: Path, args: tuple[str, ...], code: int, message: str) -> None:
    policy = _policy(tmp_path)
    done = subprocess.run([sys.executable, "-m", "mailroute", "keys", *args, "--config",
                           str(policy)], capture_output=True, timeout=120)
    assert done.returncode == code
    assert message in done.stderr.decode()


def test_a_policy_without_crypto_is_a_config_error(tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text("")
    done = subprocess.run([sys.executable, "-m", "mailroute", "keys", "list", "--config",
                           str(policy)], capture_output=True, timeout=120)
    assert done.returncode == 78
    assert b"no [crypto] section" in done.stderr


def test_import_verified_checks_the_chain(pki: Pki, tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    bundle = tmp_path / "alice-chain.pem"
    bundle.write_bytes(pki.alice.cert_path.read_bytes() + pki.chain_path.read_bytes())
    done = subprocess.run([sys.executable, "-m", "mailroute", "keys", "import", str(bundle),
                           "--trust", "verified", "--ca", str(pki.other_root.cert_path),
                           "--config", str(policy)], capture_output=True, timeout=120)
    assert done.returncode == 1
    assert b"not verified against --ca: untrusted" in done.stderr
    imported = keys_json(policy, "import", str(bundle), "--trust", "verified", "--ca",
                         str(pki.root.cert_path))
    assert [e["address"] for e in imported["imported"]] == ["alice@example.org"]
    assert keys_json(policy, "list")["keys"][0]["trust"] == "verified"


def test_the_commands_work_on_a_postgresql_directory(pki: Pki, tmp_path: Path,
                                                     postgres_dsn: str) -> None:
    dsn_file = tmp_path / "keys.dsn"
    dsn_file.write_text(postgres_dsn + "\n")
    dsn_file.chmod(0o600)
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[crypto.directory]\nbackend = "postgres"\ndsn_file = "{dsn_file}"\n')
    imported = keys_json(policy, "import", str(pki.alice.cert_path), "--pin")
    fpr = imported["imported"][0]["fingerprint"]
    (key,) = keys_json(policy, "list")["keys"]
    assert (key["fingerprint"], key["pinned"]) == (fpr, True)
    dsn_file.chmod(0o644)  # a DSN may hold a password: a readable file is refused
    done = subprocess.run([sys.executable, "-m", "mailroute", "keys", "list", "--config",
                           str(policy)], capture_output=True, timeout=120)
    assert done.returncode == 78
    assert b"chmod 600" in done.stderr


def test_a_list_that_cannot_be_written_says_so_with_its_status_line(pki: Pki,
                                                                    tmp_path: Path) -> None:
    """CLI.md: with 75 the first line on standard error is the status (found by the CLI
    audit: ``mailroute: cannot write ...`` without one)."""
    policy = _policy(tmp_path)
    keys(policy, "import", str(pki.alice.cert_path))
    with open("/dev/full", "wb") as full:
        done = subprocess.run([sys.executable, "-m", "mailroute", "keys", "list", "--config",
                               str(policy)], stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=60, check=False)
    assert done.returncode == 75
    assert done.stderr.splitlines()[0].startswith("4.3.0 cannot write the result")
