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

import pytest

from mailroute.pgp import KeyStore
from tests.pgp.gpgtool import copy_home, fingerprint, kill_agent, new_home
from tests.pgp.world import BOB_PASS, PgpWorld, add_subkey, generate_key


@pytest.fixture(scope="session")
def pgp_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgpWorld]:
    base = tmp_path_factory.mktemp("pgp")
    peer = new_home(base / "peer")
    generate_key(peer, "Alice <alice@example.org>", "ed25519", "sign,cert", "")
    alice = fingerprint(peer, "alice@example.org")
    add_subkey(peer, alice, "cv25519", "")
    subprocess.run(["gpg", "--homedir", str(peer), "--batch", "--quick-add-uid", alice,
                    "Alice Work <alice@work.example>"], check=True, capture_output=True,
                   timeout=60)
    generate_key(peer, "Bob <bob@example.net>", "rsa2048", "sign,cert,encr", BOB_PASS)
    bob = fingerprint(peer, "bob@example.net")
    kill_agent(peer)
    gateway = copy_home(peer, base / "gateway")
    generate_key(peer, "Mallory <mallory@example.com>", "ed25519", "sign,cert", "")
    mallory = fingerprint(peer, "mallory@example.com")
    add_subkey(peer, mallory, "cv25519", "")
    world = PgpWorld(peer, gateway, alice, bob, mallory)
    yield world
    kill_agent(peer)
    kill_agent(gateway)


@pytest.fixture(scope="session")
def store(pgp_world: PgpWorld) -> KeyStore:
    return KeyStore(pgp_world.gateway)
