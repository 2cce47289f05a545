"""Fixtures shared by every test package."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Property tests draw the same examples on every run (derandomize) and have no per-example
# deadline, so a loaded CI machine neither times them out nor meets a draw no run before
# did; HYPOTHESIS_PROFILE=explore draws fresh, and more, examples.
settings.register_profile("mailroute", deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", deadline=None, max_examples=2000,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "mailroute"))

# The project's own generator (corpus/generate.py); MAILROUTE_CORPUS_GEN may name another.
CORPUS_GENERATOR = Path(os.environ.get(
    "MAILROUTE_CORPUS_GEN",
    Path(__file__).resolve().parents[1] / "corpus" / "generate.py"))


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``corpus/generate.py --no-large`` output (messages and manifest.json), generated once."""
    assert CORPUS_GENERATOR.is_file(), f"no corpus generator at {CORPUS_GENERATOR}"
    out = tmp_path_factory.mktemp("corpus")
    subprocess.run([sys.executable, str(CORPUS_GENERATOR), str(out), "--no-large"],
                   check=True, capture_output=True, timeout=300)
    assert (out / "manifest.json").exists()
    return out


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A real PostgreSQL server for this test session (tests/pgserver.py); its DSN."""
    from tests import pgserver
    if pgserver.binaries() is None:
        pytest.skip("PostgreSQL binaries absent (/usr/lib/postgresql/*/bin/initdb): "
                    "install the Debian postgresql package (scripts/setup-system)")
    pytest.importorskip("psycopg", reason="psycopg not installed: mailroute[postgres]")
    with pgserver.running_server() as dsn:
        yield dsn


@pytest.fixture
def postgres_dsn(postgres_server: str) -> str:
    """An empty database of its own on the session's PostgreSQL server."""
    from tests import pgserver
    return pgserver.fresh_database(postgres_server)
