"""`mailroute check` as CLI.md pins it: one line per problem on stderr starting with
`warning:` or `error:` and naming file and key; exit 0 clean, 1 warnings only, 78 errors.
Also the policy's `topology` key: shared values written once, in the topology."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from mailroute.cli import main
from mailroute.filters.marker import MarkerVerifyFilter
from mailroute.policy import load_policy
from tests.marker.helpers import DAY, NOW, key_file_text, write_key_file
from tests.smime.pki import build_pki, issue

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TOPOLOGY = EXAMPLES / "topologies" / "t2-beside-mx-eop.toml"


def _check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = main(["check", *args])
    return code, capsys.readouterr().err.splitlines()


def _marker_policy(tmp_path: Path, extra: str = "", keys: str | None = None) -> Path:
    write_key_file(tmp_path, keys if keys is not None else key_file_text())
    policy = tmp_path / "policy.toml"
    policy.write_text(f'{extra}\n[[pipeline]]\nfilter = "marker-verify"\nkey_file = "keys.toml"\n'
                      '[[pipeline]]\nfilter = "marker-set"\nkey_file = "keys.toml"\n')
    return policy


def test_a_clean_policy_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = _marker_policy(tmp_path)
    assert _check(capsys, "--config", str(policy), "--now", str(NOW)) == (0, [])


def test_the_bundled_gateway_policy_agrees_with_its_topology(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(EXAMPLES / "gateway", tmp_path / "gateway")
    shutil.copytree(EXAMPLES / "disclaimer", tmp_path / "disclaimer")
    (tmp_path / "gateway" / "run").mkdir(exist_ok=True)
    write_key_file(tmp_path / "gateway" / "run", name="marker-keys.toml")
    assert _check(capsys, "--config", str(tmp_path / "gateway" / "policy.toml"),
                  "--topology", str(TOPOLOGY), "--now", str(NOW)) == (0, [])


def test_every_unsafe_or_missing_secret_is_an_error_naming_file_and_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = _marker_policy(tmp_path)
    (tmp_path / "keys.toml").chmod(0o640)
    with policy.open("a") as handle:
        handle.write('[[pipeline]]\nfilter = "dkim-sign"\ndomain = "example.net"\n'
                     'selector = "s1"\nkey = "missing.pem"\n')
    code, lines = _check(capsys, "--config", str(policy), "--now", str(NOW))
    assert code == 78
    keys = str(tmp_path / "keys.toml")
    assert lines[:2] == [
        f"error: {keys}: pipeline[0].key_file: key file is accessible by group or others "
        "(mode 0640); chmod 600 it",
        f"error: {keys}: pipeline[1].key_file: key file is accessible by group or others "
        "(mode 0640); chmod 600 it"]
    assert lines[2].startswith(f"error: {tmp_path / 'missing.pem'}: pipeline[2].key: cannot "
                               "open key")
    assert len(lines) == 3
    assert all(line.startswith("error: ") for line in lines)


def test_certificates_expired_are_errors_and_expiring_soon_warnings(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pki = build_pki(tmp_path / "pki")
    now = dt.datetime.now(dt.UTC)
    soon = issue(tmp_path / "pki", "soon", issuer=pki.issuing, email="soon@example.org",
                 not_before=now - dt.timedelta(days=300), not_after=now + dt.timedelta(days=10))
    policy = tmp_path / "policy.toml"
    policy.write_text('[[pipeline]]\nfilter = "smime-sign"\n'
                      f'cert = "{soon.cert_path}"\nkey = "{soon.key_path}"\n')
    code, lines = _check(capsys, "--config", str(policy))
    assert code == 1
    [line] = lines
    assert line.startswith(f"warning: {soon.cert_path}: pipeline[0].cert: certificate "
                           "CN=soon,O=Mailroute Test expires on ")
    assert line.endswith(("(in 9 days)", "(in 10 days)"))
    # --warn-days 5: no longer a warning; --errors-only: listed, exit 0
    assert _check(capsys, "--config", str(policy), "--warn-days", "5") == (0, [])
    assert _check(capsys, "--config", str(policy), "--errors-only") == (0, [line])
    policy.write_text('[[pipeline]]\nfilter = "smime-verify"\n'
                      f'trust = ["{pki.root.cert_path}", "{pki.expired.cert_path}"]\n')
    code, lines = _check(capsys, "--config", str(policy))
    assert code == 78
    end = pki.expired.cert.not_valid_after_utc
    assert lines == [f"error: {pki.expired.cert_path}: pipeline[0].trust: certificate "
                     f"CN=expired,O=Mailroute Test expired on {end:%Y-%m-%d}"]


def _errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], policy_text: str
            ) -> tuple[Path, list[str]]:
    """Write the policy, run check, expect 78; the policy's path and the lines."""
    policy = tmp_path / "policy.toml"
    policy.write_text(policy_text)
    code, lines = _check(capsys, "--config", str(policy))
    assert code == 78
    return policy, lines


def test_a_decryption_key_of_another_certificate_is_an_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by the crypto audit: check said ok, and every message was undecryptable."""
    pki = build_pki(tmp_path / "pki")
    policy, lines = _errors(tmp_path, capsys, '[[pipeline]]\nfilter = "smime-decrypt"\n'
                            f'cert = "{pki.alice.cert_path}"\nkey = "{pki.dave.key_path}"\n')
    assert lines == [f"error: {policy}:4: pipeline[0].key: the private key does not belong to "
                     "the certificate"]


def _pgp_sign_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], home_mode: int
                     ) -> tuple[Path, list[str]]:
    """A ``pgp-sign`` policy for alice@example.org over an empty GnuPG home of ``home_mode``;
    the policy's path and check's error lines."""
    (tmp_path / "gnupg").mkdir(mode=home_mode)
    return _errors(tmp_path, capsys, '[[pipeline]]\nfilter = "pgp-sign"\n'
                   'gnupghome = "gnupg"\nsigner = "alice@example.org"\n')


def test_a_pgp_signer_without_a_secret_key_is_an_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by the crypto audit: check said ok, and every message was refused (69)."""
    policy, lines = _pgp_sign_errors(tmp_path, capsys, 0o700)
    assert lines == [f"error: {policy}: pipeline[0].signer: alice@example.org: no usable "
                     "secret signing key (no-key)"]


def test_a_gnupghome_that_cannot_be_used_is_named(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by the CLI audit: the error said what was wrong, not with which directory."""
    policy, lines = _pgp_sign_errors(tmp_path, capsys, 0o755)
    assert lines == [f"error: {policy}:3: pipeline[0].gnupghome: {tmp_path / 'gnupg'}: GnuPG "
                     "home must be accessible by its owner only"]


def test_marker_keys_that_stop_signing_soon_warn_and_none_signing_is_an_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = key_file_text(keys=({"id": "k1", "secret": "QS1zZWNyZXQtdGhhdC1tdXN0LW5ldmVyLWxl"
                                "YWstMDE=", "sign_until": NOW + 5 * DAY},))
    policy = _marker_policy(tmp_path, keys=keys)
    code, lines = _check(capsys, "--config", str(policy), "--now", str(NOW))
    assert code == 1
    assert lines == [f"warning: {tmp_path / 'keys.toml'}: pipeline[1].key_file: no marker key "
                     "may sign after 2026-09-26 (in 5 days): run mailroute marker rotate"]
    code, lines = _check(capsys, "--config", str(policy), "--now", str(NOW + 6 * DAY))
    assert code == 78
    assert lines == [f"error: {tmp_path / 'keys.toml'}: pipeline[1].key_file: no marker key "
                     "may sign now: marker-set answers 4.3.0 (run mailroute marker rotate)"]


def test_marker_keys_that_stop_verifying_soon_warn_and_none_verifying_is_an_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A host with marker-verify only: once no key verifies, every marker is unknown-key."""
    write_key_file(tmp_path, key_file_text(keys=(
        {"id": "k1", "secret": "QS1zZWNyZXQtdGhhdC1tdXN0LW5ldmVyLWxlYWstMDE=",
         "sign_until": NOW + 10 * DAY, "verify_until": NOW + 17 * DAY},)))
    policy = tmp_path / "policy.toml"
    policy.write_text('[[pipeline]]\nfilter = "marker-verify"\nkey_file = "keys.toml"\n')
    assert _check(capsys, "--config", str(policy), "--now", str(NOW - 20 * DAY)) == (0, [])
    code, lines = _check(capsys, "--config", str(policy), "--now", str(NOW))
    assert code == 1
    assert lines == [f"warning: {tmp_path / 'keys.toml'}: pipeline[0].key_file: no marker key "
                     "verifies after 2026-10-08 (in 17 days): add the signing gateway's next key"]
    code, lines = _check(capsys, "--config", str(policy), "--now", str(NOW + 17 * DAY))
    assert code == 78
    assert lines == [f"error: {tmp_path / 'keys.toml'}: pipeline[0].key_file: no marker key "
                     "verifies now: every marker reads unknown-key (add the signing gateway's "
                     "current key)"]


def test_policy_values_that_contradict_the_topology_are_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = _marker_policy(tmp_path, keys=key_file_text(tag="zz3y7a"))
    text = policy.read_text().replace('key_file = "keys.toml"\n',
                                      'key_file = "keys.toml"\nloop_window = 600\n'
                                      'tenant_id = "00000000-0000-0000-0000-000000000000"\n', 1)
    policy.write_text('[gateway]\ninternal_domains = ["other.example"]\n' + text)
    code, lines = _check(capsys, "--config", str(policy), "--topology", str(TOPOLOGY),
                         "--now", str(NOW))
    assert code == 78
    assert lines == [
        f"error: {policy}: pipeline[0].loop_window: is 600, the topology {TOPOLOGY} has "
        "gateway.loop_window_s = 3600",
        f"error: {policy}: pipeline[0].tenant_id: is '00000000-0000-0000-0000-000000000000', "
        f"the topology {TOPOLOGY} has tenant.tenant_id = '6f1c2a9e-3b7d-4c1e-9a55-0d2f1e8b7c44'",
        f"error: {tmp_path / 'keys.toml'}: pipeline[0].key_file: tag 'zz3y7a' is not the "
        f"topology's [gateway.marker] tag 'g7k2qd' ({TOPOLOGY}): Exchange rules would not "
        "recognise the marker",
        f"error: {tmp_path / 'keys.toml'}: pipeline[1].key_file: tag 'zz3y7a' is not the "
        f"topology's [gateway.marker] tag 'g7k2qd' ({TOPOLOGY}): Exchange rules would not "
        "recognise the marker",
        f"warning: {policy}: gateway.internal_domains: ['other.example'] differs from the "
        f"topology's domains ['example.net'] ({TOPOLOGY}): the direction of a message may "
        "differ from the simulator's"]
    # without --topology nothing is compared
    assert _check(capsys, "--config", str(policy), "--now", str(NOW)) == (0, [])


def test_a_policy_naming_its_topology_takes_the_shared_values_from_it(tmp_path: Path) -> None:
    policy = _marker_policy(tmp_path, extra=f'topology = "{TOPOLOGY}"')
    pipeline = load_policy(policy)
    verify, _ = pipeline.filters
    assert isinstance(verify, MarkerVerifyFilter)
    settings = verify.settings
    assert settings.tenant_id == "6f1c2a9e-3b7d-4c1e-9a55-0d2f1e8b7c44"
    assert settings.windows.loop_window == 3600
    assert pipeline.internal_domains == frozenset({"example.net"})


def test_a_policy_naming_its_topology_refuses_a_key_file_with_another_tag(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = _marker_policy(tmp_path, extra=f'topology = "{TOPOLOGY}"',
                            keys=key_file_text(tag="zz3y7a"))
    code, lines = _check(capsys, "--config", str(policy), "--now", str(NOW))
    assert code == 78
    assert lines[0].startswith(f"error: {tmp_path / 'keys.toml'}: pipeline[0].key_file: tag "
                               "'zz3y7a' is not the topology's")
    assert len(lines) == 2   # and pipeline[1]; loading the policy says the same, not repeated
    assert main(["process", "--config", str(policy)]) == 78
    assert "is not the topology's [gateway.marker] tag 'g7k2qd'" in capsys.readouterr().err


def test_an_unknown_filter_lists_the_valid_names(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[[pipeline]]\nfilter = "disclamer"\n')
    code, [line] = _check(capsys, "--config", str(policy))
    assert code == 78
    assert line.startswith(f"error: {policy}:2: pipeline[0].filter: unknown filter "
                           "'disclamer'; the filters are arc-seal, disclaimer, dkim-sign, "
                           "dkim-verify, encrypt-by-policy, harvest-keys, headers, marker-set,")


def test_a_missing_policy_is_an_error_naming_it(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.toml"
    code, [line] = _check(capsys, "--config", str(missing))
    assert code == 78
    assert line.startswith(f"error: {missing}: cannot read the policy: ")
