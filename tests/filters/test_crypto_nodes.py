"""Two gateway nodes (separate processes, separate state directories) sharing one real
PostgreSQL server: a certificate node A harvests is used by node B for the next outbound
message, and a processed-message record node A writes is counted by node B."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from mailroute import Envelope
from mailroute.policy import load_policy
from tests.filters.test_crypto import (
    ALICE,
    ENTITY,
    ME,
    _inbound_signed_by_mailroute,
    _openssl_decrypt,
    _outbound,
    policy_text,
)
from tests.smime.pki import Pki


def _policy(tmp_path: Path, node: str, pki: Pki, dsn: str) -> Path:
    dsn_file = tmp_path / "pg.dsn"
    dsn_file.write_text(dsn + "\n")
    dsn_file.chmod(0o600)
    policy = tmp_path / f"{node}.toml"
    policy.write_text(policy_text(
        pki, tmp_path / node, gateway=f'processed_dsn_file = "{dsn_file}"',
        crypto=f'[crypto.directory]\nbackend = "postgres"\ndsn_file = "{dsn_file}"'))
    return policy


def _node_a(policy: str, inbound: bytes, out: multiprocessing.Queue[tuple[object, ...]]
            ) -> None:
    pipeline = load_policy(policy)
    result = pipeline.process(inbound, Envelope(mail_from=ALICE, rcpt_to=(ME,),
                                                client_address="203.0.113.5"))
    assert pipeline.context is not None
    store = pipeline.context.processed
    assert store is not None
    store.record("digest-of-a-message", 1000.0, 3600, fingerprint="node-a")
    out.put((result.action.value, result.item.annotation("harvest-keys")
             if result.item else None))


def _node_b(policy: str, out: multiprocessing.Queue[tuple[object, ...]]) -> None:
    pipeline = load_policy(policy)
    result = pipeline.process(_outbound(), Envelope(mail_from=ME, rcpt_to=(ALICE,),
                                                    client_address="127.0.0.1"))
    assert pipeline.context is not None
    store = pipeline.context.processed
    assert store is not None
    out.put((result.action.value, result.data,
             store.count("digest-of-a-message", 1001.0, 3600, other_than="node-b")))


def test_two_nodes_share_harvested_keys_and_processed_records(pki: Pki, tmp_path: Path,
                                                              postgres_dsn: str) -> None:
    policy_a = _policy(tmp_path, "a", pki, postgres_dsn)
    policy_b = _policy(tmp_path, "b", pki, postgres_dsn)
    context = multiprocessing.get_context("fork")
    out: multiprocessing.Queue[tuple[object, ...]] = context.Queue()
    first = context.Process(target=_node_a, args=(str(policy_a),
                                                   _inbound_signed_by_mailroute(pki), out))
    first.start()
    action, harvested = out.get(timeout=120)
    first.join(60)
    assert (action, harvested) == ("accept", f"smime {ALICE} added")
    second = context.Process(target=_node_b, args=(str(policy_b), out))
    second.start()
    action, data, counted = out.get(timeout=120)
    second.join(60)
    assert action == "accept"
    assert counted == 1
    assert isinstance(data, bytes)
    plain, algorithm = _openssl_decrypt(pki, data, tmp_path)
    assert plain == ENTITY
    assert algorithm == "aes-256-gcm"
    assert not (tmp_path / "a" / "keys.sqlite3").exists()  # nothing went to a local file
