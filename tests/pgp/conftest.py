"""Keys for the PGP tests, generated once per session in throwaway homes.

* ``alice@example.org``: Ed25519 primary (sign) + Cv25519 subkey (encrypt), no passphrase;
  a second user ID ``alice@work.example``.
* ``bob@example.net``: RSA 2048 (sign and encrypt), passphrase ``BOB_PASS``.
* ``mallory@example.com``: Ed25519/Cv25519, only in the peer home (unknown to the gateway).

``peer`` is the home the real gpg works in (it has every secret key); ``gateway`` is a copy
for mailroute with alice's and bob's keys. Agents of both are stopped at the end.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from gpgtool import copy_home, fingerprint, kill_agent, new_home

from mailroute.pgp import KeyStore

BOB_PASS = "correct horse battery staple"


@dataclass(frozen=True)
class PgpWorld:
    peer: Path
    gateway: Path
    alice: str
    bob: str
    mallory: str


def _gen(home: Path, uid: str, algo: str, usage: str, passphrase: str) -> None:
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback",
                    "--passphrase", passphrase, "--quick-gen-key", uid, algo, usage, "1y"],
                   check=True, capture_output=True, timeout=120)


def _add_subkey(home: Path, fpr: str, algo: str, passphrase: str) -> None:
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback",
                    "--passphrase", passphrase, "--quick-add-key", fpr, algo, "encr", "1y"],
                   check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def pgp_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgpWorld]:
    base = tmp_path_factory.mktemp("pgp")
    peer = new_home(base / "peer")
    _gen(peer, "Alice <alice@example.org>", "ed25519", "sign,cert", "")
    alice = fingerprint(peer, "alice@example.org")
    _add_subkey(peer, alice, "cv25519", "")
    subprocess.run(["gpg", "--homedir", str(peer), "--batch", "--quick-add-uid", alice,
                    "Alice Work <alice@work.example>"], check=True, capture_output=True,
                   timeout=60)
    _gen(peer, "Bob <bob@example.net>", "rsa2048", "sign,cert,encr", BOB_PASS)
    bob = fingerprint(peer, "bob@example.net")
    kill_agent(peer)
    gateway = copy_home(peer, base / "gateway")
    _gen(peer, "Mallory <mallory@example.com>", "ed25519", "sign,cert", "")
    mallory = fingerprint(peer, "mallory@example.com")
    _add_subkey(peer, mallory, "cv25519", "")
    world = PgpWorld(peer, gateway, alice, bob, mallory)
    yield world
    kill_agent(peer)
    kill_agent(gateway)


@pytest.fixture(scope="session")
def store(pgp_world: PgpWorld) -> KeyStore:
    return KeyStore(pgp_world.gateway)
