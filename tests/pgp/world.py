"""The PGP test world: keys generated once per session in throwaway homes (see conftest)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

BOB_PASS = "correct horse battery staple"


@dataclass(frozen=True)
class PgpWorld:
    peer: Path
    gateway: Path
    alice: str
    bob: str
    mallory: str


def generate_key(home: Path, uid: str, algo: str, usage: str, passphrase: str) -> None:
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback",
                    "--passphrase", passphrase, "--quick-gen-key", uid, algo, usage, "1y"],
                   check=True, capture_output=True, timeout=120)


def add_subkey(home: Path, fpr: str, algo: str, passphrase: str) -> None:
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback",
                    "--passphrase", passphrase, "--quick-add-key", fpr, algo, "encr", "1y"],
                   check=True, capture_output=True, timeout=120)
