"""The release artefacts: `python -m build` makes a wheel and an sdist that `twine check`
accepts, and the wheel installed into a fresh venv of the system Python (not editable, not
this checkout) runs `mailroute --version`, `marker keygen`, `check` and `process`.

Runs in the normal suite (marker `install`, about a minute: it builds in an isolated
environment and installs the wheel's dependencies).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mailroute

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = Path("/usr/bin/python3")

pytestmark = pytest.mark.install


def _run(*args: str | Path, cwd: Path | None = None, data: bytes | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(a) for a in args], capture_output=True, input=data, cwd=cwd,
                          timeout=600, check=False, env=env)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = _run(sys.executable, "-m", "build", "--outdir", out, ROOT)
    assert built.returncode == 0, built.stderr.decode()[-3000:]
    return out


def test_build_makes_a_wheel_and_an_sdist_that_twine_accepts(dist: Path) -> None:
    version = mailroute.__version__
    names = sorted(p.name for p in dist.iterdir())
    assert names == [f"mailroute-{version}-py3-none-any.whl", f"mailroute-{version}.tar.gz"]
    checked = _run(sys.executable, "-m", "twine", "check", "--strict", *dist.iterdir())
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    assert checked.stdout.decode().count("PASSED") == 2


@pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="no /usr/bin/python3 on this machine")
def test_the_wheel_runs_from_a_fresh_venv_of_the_system_python(dist: Path,
                                                               tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    made = _run(SYSTEM_PYTHON, "-m", "venv", venv)
    assert made.returncode == 0, made.stderr.decode()
    [wheel] = dist.glob("*.whl")
    installed = _run(venv / "bin" / "pip", "install", "--no-input", wheel)
    assert installed.returncode == 0, installed.stderr.decode()[-3000:]
    mailroute_bin = venv / "bin" / "mailroute"
    # run from elsewhere, without this checkout on the path: the installed copy answers
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = _run(venv / "bin" / "python", "-c", "import mailroute; print(mailroute.__file__)",
                 cwd=tmp_path, env=env)
    assert str(venv) in where.stdout.decode(), where.stdout.decode()
    version = _run(mailroute_bin, "--version", cwd=tmp_path, env=env)
    assert version.stdout.decode().strip() == f"mailroute {mailroute.__version__}"

    keys = tmp_path / "marker-keys.toml"
    made_keys = _run(mailroute_bin, "marker", "keygen", "--key-file", keys, "--org-id",
                     "example.net", "--tag", "g7k2qd", cwd=tmp_path, env=env)
    assert made_keys.returncode == 0, made_keys.stderr.decode()
    policy = tmp_path / "policy.toml"
    policy.write_text('[gateway]\ninternal_domains = ["example.net"]\n'
                      '[[pipeline]]\nfilter = "headers"\nadd = { X-Processed = "mailroute" }\n'
                      '[[pipeline]]\nfilter = "marker-set"\nkey_file = "marker-keys.toml"\n')
    checked = _run(mailroute_bin, "check", "--config", policy, cwd=tmp_path, env=env)
    assert (checked.returncode, checked.stderr) == (0, b""), checked.stderr.decode()

    message = (b"From: a@example.net\r\nTo: b@partner.example\r\nMessage-ID: <i1@example.net>"
               b"\r\nSubject: installed\r\n\r\nhello\r\n")
    done = _run(mailroute_bin, "process", "--config", policy, "--mail-from", "a@example.net",
                "--rcpt", "b@partner.example", data=message, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr.decode()
    assert b"X-Processed: mailroute\r\n" in done.stdout
    assert b"X-Mailroute-Mark: v1.g7k2qd." in done.stdout
    assert done.stdout.endswith(b"\r\n\r\nhello\r\n")


def test_the_sdist_holds_the_sources_and_no_local_state(dist: Path, tmp_path: Path) -> None:
    [sdist] = dist.glob("*.tar.gz")
    shutil.unpack_archive(sdist, tmp_path)
    [top] = tmp_path.iterdir()
    assert (top / "src" / "mailroute" / "py.typed").exists()
    assert (top / "examples" / "systemd" / "mailroute-milter.service").exists()
    leaked = [p for p in top.rglob("*") if p.name in (".venv", "__pycache__", "site")
              or p.name.endswith(".pyc") or p.name == "marker-keys.toml"]
    assert leaked == []
