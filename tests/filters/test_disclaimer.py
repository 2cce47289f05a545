"""The filter from a policy file and from the command line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mailroute
from mailroute.cli import main
from mailroute.exitcodes import ExitCode
from tests.disclaimer.conftest import write_templates
from tests.disclaimer.helpers import MARKER, body_texts

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "disclaimer"
MESSAGE = (b"From: Anna Schmidt <anna.schmidt@corp.example>\r\nTo: x@partner.example\r\n"
           b"Subject: Angebot\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=iso-8859-1\r\n"
           b"Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe aus K=F6ln\r\n")

POLICY = """
[gateway]
internal_domains = ["corp.example"]

[[pipeline]]
filter = "disclaimer"
text = "footer.txt"
html = "footer.html"
var = ["greeting=Grüße"]
[pipeline.when]
direction = ["outbound"]
"""


def test_one_policy_footer_on_outbound_none_on_internal(tmp_path: Path) -> None:
    write_templates(tmp_path)
    (tmp_path / "policy.toml").write_text(POLICY, encoding="utf-8")
    pipeline = mailroute.load_policy(tmp_path / "policy.toml")
    outbound = pipeline.process(MESSAGE, mailroute.Envelope(
        mail_from="anna.schmidt@corp.example", rcpt_to=["x@partner.example"]))
    assert outbound.action == "accept"
    [(_, text)] = body_texts(outbound.data or b"")
    assert text.startswith("Grüße aus Köln\n")
    assert text.count(MARKER) == 1
    internal = pipeline.process(MESSAGE, mailroute.Envelope(
        mail_from="anna.schmidt@corp.example", rcpt_to=["ben@corp.example"]))
    assert internal.action == "accept"
    assert internal.data == MESSAGE


def test_unknown_option_is_a_config_error(tmp_path: Path) -> None:
    write_templates(tmp_path)
    (tmp_path / "policy.toml").write_text(
        '[[pipeline]]\nfilter = "disclaimer"\ntext = "footer.txt"\nplacement = "top"\n',
        encoding="utf-8")
    with pytest.raises(mailroute.ConfigError, match=r"pipeline\[0\]\.placement"):
        mailroute.load_policy(tmp_path / "policy.toml")


@pytest.mark.parametrize(("options", "key"), [
    ('text = "missing.txt"', "text"),
    ('text = "footer.txt"\nposition = "middle"', "position"),
    ('text = "footer.txt"\nvar = ["novalue"]', "var"),
    ('text = "footer.txt"\ndirectory = "senders.json"', "directory"),
    ('text = "blank.txt"', "text"),
])
def test_bad_options_name_their_key(tmp_path: Path, options: str, key: str) -> None:
    write_templates(tmp_path)
    (tmp_path / "senders.json").write_text("{}", encoding="utf-8")
    (tmp_path / "blank.txt").write_text(" \n", encoding="utf-8")
    (tmp_path / "policy.toml").write_text(f'[[pipeline]]\nfilter = "disclaimer"\n{options}\n',
                                          encoding="utf-8")
    with pytest.raises(mailroute.ConfigError, match=rf"pipeline\[0\]\.{key}"):
        mailroute.load_policy(tmp_path / "policy.toml")


def test_cli_inserts_and_writes_nothing_on_refusal(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    write_templates(tmp_path)
    (tmp_path / "in.eml").write_bytes(MESSAGE)
    code = main(["disclaimer", "--text", str(tmp_path / "footer.txt"), "--html",
                 str(tmp_path / "footer.html"), "--var", "greeting=Köln", "--position",
                 "bottom", "--in", str(tmp_path / "in.eml"), "--out", str(tmp_path / "o.eml")])
    assert code == ExitCode.OK
    [(_, text)] = body_texts((tmp_path / "o.eml").read_bytes())
    assert text.endswith(MARKER + "\nKöln\n")
    signed = MESSAGE.replace(b"text/plain; charset=iso-8859-1",
                             b"application/pkcs7-mime; smime-type=signed-data")
    (tmp_path / "signed.eml").write_bytes(signed)
    code = main(["disclaimer", "--text", str(tmp_path / "footer.txt"), "--signed", "reject",
                 "--in", str(tmp_path / "signed.eml"), "--out", str(tmp_path / "r.eml")])
    assert code == ExitCode.UNAVAILABLE
    assert not (tmp_path / "r.eml").exists()
    assert capsys.readouterr().err.startswith("5.7.1 ")


def test_cli_missing_template_is_a_config_error(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["disclaimer", "--text", str(tmp_path / "nope.txt"),
                 "--in", str(tmp_path / "nope.eml")])
    assert code == ExitCode.CONFIG
    assert "text" in capsys.readouterr().err


def test_bundled_example_policy_runs(tmp_path: Path) -> None:
    folder = tmp_path / "example"
    shutil.copytree(EXAMPLE, folder)
    pipeline = mailroute.load_policy(folder / "policy.toml")
    for message in sorted((folder / "messages").glob("*.eml")):
        data = message.read_bytes()
        outbound = pipeline.process(data, mailroute.Envelope(
            mail_from="anna.weber@example.net", rcpt_to=["max@partner.example"]))
        assert outbound.action == "accept"
        assert outbound.data != data, message.name
        texts = body_texts(outbound.data or b"")
        assert texts
        for _, text in texts:
            assert "Anna Weber" in text, message.name
            assert "Head of Sales" in text, message.name
        internal = pipeline.process(data, mailroute.Envelope(
            mail_from="anna.weber@example.net", rcpt_to=["ben.kraus@example.net"]))
        assert internal.data == data


@pytest.mark.parametrize("blocked", ["bs4", "html5lib"])
def test_a_missing_html_extra_fails_the_policy_load(blocked: str) -> None:
    # sys.modules[name] = None blocks an import, as an environment without the extra would.
    code = f"""
import sys
sys.modules[{blocked!r}] = None
from mailroute.policy import load_policy
try:
    load_policy({str(EXAMPLE / 'policy.toml')!r})
except Exception as exc:
    print(type(exc).__name__, exc)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.startswith("ConfigError"), done.stdout + done.stderr
    assert f"{blocked}; install mailroute[html]" in done.stdout
