"""Interop with OpenDKIM, offline: ``opendkim -t`` (test mode) verifies with the key records
of a ``TestPublicKeys`` file and signs with a ``KeyFile``; ``opendkim-testmsg`` signs rsa-sha1.
No DNS is used anywhere (docs/dkim.md, "Offline interop with OpenDKIM")."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

import dkim as dkimpy
from mailroute.dkim import sign_message, verify_message
from mailroute.mime.scan import parse
from tests.dkim.conftest import DOMAIN, NOW, DkimWorld, dnsfunc, message

pytestmark = pytest.mark.interop


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    assert path is not None, f"{name} is not installed (scripts/setup-system installs it)"
    return path


def _opendkim(world: DkimWorld, conf: str, data: bytes) -> str:
    """Run ``opendkim -t`` on ``data`` with ``conf``; the milter actions it would take."""
    folder = world.folder
    (folder / "od.conf").write_text(conf + "Syslog no\nRequireSafeKeys false\n",
                                    encoding="utf-8")
    (folder / "od.eml").write_bytes(data)
    done = subprocess.run([_tool("opendkim"), "-x", str(folder / "od.conf"), "-vvv", "-t",
                           str(folder / "od.eml")], capture_output=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    return (done.stdout + done.stderr).decode("utf-8", "replace")


def _opendkim_verdicts(world: DkimWorld, data: bytes) -> list[str]:
    keys = world.folder / "test-keys.txt"
    keys.write_text("".join(f"{n} {v}\n" for n, v in world.records.items()), encoding="utf-8")
    out = _opendkim(world, f"Mode v\nTestPublicKeys {keys}\n", data)
    return re.findall(r"dkim=(\w+)", out)


def _opendkim_sign(world: DkimWorld, data: bytes, selector: str, key: Path,
                   algorithm: str) -> bytes:
    conf = (f"Mode s\nDomain {DOMAIN}\nSelector {selector}\nKeyFile {key}\n"
            f"SignatureAlgorithm {algorithm}\nCanonicalization relaxed/simple\n")
    out = _opendkim(world, conf, data)
    found = re.search(r"hname='DKIM-Signature' hvalue='(.*?)'", out, re.DOTALL)
    assert found is not None, out
    value = found.group(1).replace("\n", "\r\n")
    return b"DKIM-Signature: " + value.encode("ascii") + b"\r\n" + data


def _ours(data: bytes, world: DkimWorld, selector: str) -> bytes:
    key = world.rsa if selector == "rsa" else world.ed
    return sign_message(parse(data), key, domain=DOMAIN, selector=selector,
                        timestamp=NOW).to_bytes()



@pytest.mark.parametrize("selector", ["rsa", "ed"])
def test_opendkim_verifies_our_signatures(world: DkimWorld, selector: str) -> None:
    signed = _ours(message(), world, selector)
    assert _opendkim_verdicts(world, signed) == ["pass"]
    assert dkimpy.DKIM(signed).verify(0, dnsfunc=dnsfunc(world.dns()))


def test_opendkim_verifies_both_of_a_dual_signature(world: DkimWorld) -> None:
    signed = _ours(_ours(message(), world, "rsa"), world, "ed")
    assert _opendkim_verdicts(world, signed) == ["pass", "pass"]


@pytest.mark.parametrize(("old", "new"), [(b"Regards", b"Regardz"),
                                          (b"Subject: test", b"Subject: tost")])
def test_opendkim_and_we_agree_an_altered_message_fails(world: DkimWorld, old: bytes,
                                                        new: bytes) -> None:
    altered = _ours(message(), world, "rsa").replace(old, new)
    assert _opendkim_verdicts(world, altered) == ["fail"]
    assert [r.status.value for r in verify_message(parse(altered), world.dns(), now=NOW)] == [
        "fail"]


@pytest.mark.parametrize(("selector", "algorithm"), [("rsa", "rsa-sha256"),
                                                     ("ed", "ed25519-sha256")])
def test_we_verify_opendkim_s_signatures(world: DkimWorld, selector: str,
                                         algorithm: str) -> None:
    key = world.rsa_path if selector == "rsa" else world.ed_path
    signed = _opendkim_sign(world, message(), selector, key, algorithm)
    results = verify_message(parse(signed), world.dns(), now=NOW)
    assert [(r.status.value, r.algorithm) for r in results] == [("pass", algorithm)]
    tampered = signed.replace(b"Regards", b"Regardz")
    assert [r.status.value for r in verify_message(parse(tampered), world.dns(), now=NOW)] == [
        "fail"]


def test_opendkim_testmsg_rsa_sha1_fails_here(world: DkimWorld) -> None:
    done = subprocess.run([_tool("opendkim-testmsg"), "-d", DOMAIN, "-s", "rsa", "-k",
                           str(world.rsa_traditional_path)], input=message(),
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    signed = done.stdout.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert b"a=rsa-sha1" in signed
    results = verify_message(parse(signed), world.dns(), now=NOW)
    assert [(r.status.value, r.reason) for r in results] == [
        ("fail", "rsa-sha1 is not accepted (RFC 8301)")]
