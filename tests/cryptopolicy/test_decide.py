"""decide_crypto, table-driven: each row is a message, the keys known, a policy and the plan
expected per recipient (action, method, cipher) with a reason that must be given."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mailroute.cryptopolicy import (
    Action,
    CryptoPolicy,
    EncryptMode,
    Method,
    MissingKeyAction,
    Rules,
    SignMode,
    Trigger,
    decide_crypto,
)
from mailroute.item import Envelope, MailItem
from mailroute.keys.directory import KeyKind, KeyRecord, KeyState, Trust
from mailroute.keys.sqlite_directory import SqliteKeyDirectory
from mailroute.mime import parse

NOW = 1_800_000_000.0
DAY = 86400.0
BOB, CAROL, DAVE = "bob@partner.example", "carol@other.example", "dave@partner.example"
INSIDE = "alice@corp.example"


@dataclass(frozen=True)
class K:
    """A key in the directory for one case."""

    address: str
    kind: KeyKind = KeyKind.SMIME
    fpr: str = ""
    trust: Trust = Trust.HARVESTED
    state: KeyState = KeyState.ACTIVE
    caps: tuple[str, ...] = ()
    expires: float = NOW + 365 * DAY
    starts: float = NOW - DAY
    revoked: bool = False
    preferred: bool = False
    seen: float = NOW - DAY

    def record(self, index: int) -> KeyRecord:
        return KeyRecord(address=self.address, kind=self.kind,
                         fingerprint=self.fpr or f"{index:02x}" * 32, data=b"x",
                         trust=self.trust, state=self.state, capabilities=self.caps,
                         not_after=self.expires, not_before=self.starts,
                         revoked=self.revoked, preferred=self.preferred, source="test")


GCM = ("aes256_gcm", "aes128_gcm", "aes256_cbc")
GCM128 = ("aes128_gcm", "aes256_cbc")
CBC = ("aes256_cbc", "aes128_cbc")


@dataclass(frozen=True)
class Case:
    """One row: the facts, and what each recipient must get."""

    name: str
    expect: Mapping[str, tuple[str, str, str]]  # rcpt -> (action, method, cipher)
    rcpt: tuple[str, ...] = (BOB,)
    keys: tuple[K, ...] = ()
    sender: str = INSIDE
    from_field: str = ""
    client: str = "10.1.2.3"  # inside the authenticated network
    subject: str = "Quarterly figures"
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "text/plain"
    defaults: Rules = field(default_factory=Rules)
    domains: Mapping[str, Rules] = field(default_factory=dict)
    users: Mapping[str, Rules] = field(default_factory=dict)
    min_trust: Trust = Trust.HARVESTED
    reason: str = ""            # must occur in some recipient's reasons
    sign: bool | None = None    # expected sign flag of every non-pass recipient
    triggered: bool | None = None
    groups: int | None = None
    annotations: tuple[tuple[str, str], ...] = ()
    auth_user: str | None = None


MAND = Rules(encrypt=EncryptMode.MANDATORY)
NEVER = Rules(encrypt=EncryptMode.NEVER)
E_SMIME_CBC = ("encrypt", "smime", "aes-256-cbc")
E_SMIME_GCM = ("encrypt", "smime", "aes-256-gcm")
E_PGP = ("encrypt", "pgp", "")
PLAIN = ("plain", "", "")
PASS = ("pass", "", "")
REJECT = ("reject", "", "")

CASES = [
    # opportunistic default
    Case("opportunistic without key is plain", {BOB: PLAIN}, reason="opportunistic"),
    Case("opportunistic with harvested key encrypts", {BOB: E_SMIME_CBC}, keys=(K(BOB),)),
    Case("no capabilities learnt: CBC", {BOB: E_SMIME_CBC}, keys=(K(BOB, caps=CBC),)),
    Case("AES-256-GCM advertised: GCM", {BOB: E_SMIME_GCM}, keys=(K(BOB, caps=GCM),)),
    Case("only AES-128-GCM advertised", {BOB: ("encrypt", "smime", "aes-128-gcm")},
         keys=(K(BOB, caps=GCM128),)),
    Case("policy forbids GCM", {BOB: E_SMIME_CBC}, keys=(K(BOB, caps=GCM),),
         defaults=Rules(ciphers=("aes-256-cbc",))),
    Case("policy only GCM, recipient cannot: no cipher in common", {BOB: PLAIN},
         keys=(K(BOB, caps=CBC),), defaults=Rules(ciphers=("aes-256-gcm",)),
         reason="no cipher in common"),
    Case("policy only GCM, mandatory, recipient cannot: reject", {BOB: REJECT},
         keys=(K(BOB, caps=CBC),), defaults=Rules(ciphers=("aes-256-gcm",),
                                                  encrypt=EncryptMode.MANDATORY)),
    # mandatory
    Case("mandatory with key encrypts", {BOB: E_SMIME_CBC}, keys=(K(BOB),), defaults=MAND),
    Case("mandatory without key rejects", {BOB: REJECT}, defaults=MAND,
         reason="no usable key: reject (mandatory)"),
    Case("mandatory without key, hold", {BOB: ("hold", "", "")},
         defaults=Rules(encrypt=EncryptMode.MANDATORY, on_missing_key=MissingKeyAction.HOLD)),
    Case("mandatory without key, notify", {BOB: ("notify", "", "")},
         defaults=Rules(encrypt=EncryptMode.MANDATORY, on_missing_key=MissingKeyAction.NOTIFY)),
    Case("mandatory per domain", {BOB: REJECT, CAROL: PLAIN}, rcpt=(BOB, CAROL),
         domains={"partner.example": MAND}, groups=2),
    Case("domain rule covers subdomains", {"eve@mail.partner.example": REJECT},
         rcpt=("eve@mail.partner.example",), domains={"partner.example": MAND}),
    Case("user rule beats domain rule", {BOB: PLAIN, DAVE: REJECT}, rcpt=(BOB, DAVE),
         domains={"partner.example": MAND}, users={BOB: NEVER}),
    Case("never means never, even with a key", {BOB: PLAIN}, keys=(K(BOB),), defaults=NEVER,
         reason="encrypt never"),
    Case("user on_missing_key overrides domain", {BOB: ("hold", "", "")},
         domains={"partner.example": MAND},
         users={BOB: Rules(on_missing_key=MissingKeyAction.HOLD)}),
    # mixed recipients
    Case("mixed: one with key, one without, opportunistic: split",
         {BOB: E_SMIME_CBC, CAROL: PLAIN}, rcpt=(BOB, CAROL), keys=(K(BOB),), groups=2),
    Case("mixed: both with CBC keys share one copy", {BOB: E_SMIME_CBC, CAROL: E_SMIME_CBC},
         rcpt=(BOB, CAROL), keys=(K(BOB), K(CAROL)), groups=1),
    Case("mixed: GCM and CBC recipients are split", {BOB: E_SMIME_GCM, CAROL: E_SMIME_CBC},
         rcpt=(BOB, CAROL), keys=(K(BOB, caps=GCM), K(CAROL)), groups=2),
    Case("mixed: internal recipient passes, external encrypted",
         {"colleague@corp.example": PASS, BOB: E_SMIME_CBC},
         rcpt=("colleague@corp.example", BOB), keys=(K(BOB),), groups=2),
    Case("mixed: mandatory refused beside opportunistic plain", {BOB: REJECT, CAROL: PLAIN},
         rcpt=(BOB, CAROL), users={BOB: MAND}),
    # triggers
    Case("subject tag from authenticated inside makes it mandatory", {BOB: REJECT},
         subject="[secure] contract", triggered=True, reason="trigger: encrypt mandatory"),
    Case("subject tag any case and spacing", {BOB: E_SMIME_CBC}, keys=(K(BOB),),
         subject="Re: [ SECURE ] contract", triggered=True),
    Case("trigger header from inside", {BOB: REJECT},
         headers=(("X-Mailroute-Encrypt", "yes"),), triggered=True),
    Case("trigger header with value no is no trigger", {BOB: PLAIN},
         headers=(("X-Mailroute-Encrypt", "no"),), triggered=False),
    Case("tag from an unauthenticated client is ignored", {BOB: PLAIN},
         subject="[secure] contract", client="203.0.113.9", triggered=False),
    Case("tag from a SASL-authenticated user on any network", {BOB: REJECT},
         subject="[secure] contract", client="203.0.113.9", auth_user="alice",
         triggered=True),
    Case("tag from outside sender is ignored", {"colleague@corp.example": PASS},
         rcpt=("colleague@corp.example",), sender="mallory@evil.example",
         client="203.0.113.9", subject="[secure] x", triggered=False),
    Case("From of another domain makes the sender not internal", {BOB: PASS},
         from_field="Mallory <mallory@evil.example>", subject="[secure] x", triggered=False),
    Case("own tenant (marker return-path) is authenticated", {BOB: REJECT},
         client="198.51.100.7", subject="[secure] x", triggered=True,
         annotations=(("marker.source", "return-path"),)),
    Case("trigger raises a never rule to mandatory", {BOB: REJECT}, defaults=NEVER,
         subject="[secure] x", triggered=True),
    # trust and key state
    Case("harvested key below min_trust verified is not used", {BOB: PLAIN},
         keys=(K(BOB),), min_trust=Trust.VERIFIED, reason="trust harvested is below verified"),
    Case("manual key meets min_trust verified", {BOB: E_SMIME_CBC},
         keys=(K(BOB, trust=Trust.MANUAL),), min_trust=Trust.VERIFIED),
    Case("manual key preferred over harvested", {BOB: E_SMIME_GCM},
         keys=(K(BOB, caps=CBC), K(BOB, trust=Trust.MANUAL, caps=GCM))),
    Case("held key (changed) is not used", {BOB: REJECT},
         keys=(K(BOB, state=KeyState.HELD),), defaults=MAND,
         reason="changed key held for review"),
    Case("held new key beside active old key: old key used", {BOB: E_SMIME_GCM},
         keys=(K(BOB, caps=GCM), K(BOB, state=KeyState.HELD, caps=CBC))),
    Case("expired certificate is not used", {BOB: REJECT},
         keys=(K(BOB, expires=NOW - 1),), defaults=MAND, reason="expired"),
    Case("not yet valid certificate is not used", {BOB: PLAIN},
         keys=(K(BOB, starts=NOW + DAY),), reason="not yet valid"),
    Case("revoked certificate is not used", {BOB: REJECT},
         keys=(K(BOB, revoked=True),), defaults=MAND, reason="revoked"),
    Case("expired one, valid other: valid one used", {BOB: E_SMIME_GCM},
         keys=(K(BOB, expires=NOW - 1), K(BOB, caps=GCM))),
    Case("retired key is not used", {BOB: PLAIN}, keys=(K(BOB, state=KeyState.RETIRED),),
         reason="retired"),
    Case("signer's preferred encryption certificate wins",
         {BOB: E_SMIME_GCM}, keys=(K(BOB, caps=CBC, seen=NOW), K(BOB, caps=GCM,
                                                                 preferred=True))),
    # method preference
    Case("either, S/MIME preferred, both keys", {BOB: E_SMIME_CBC},
         keys=(K(BOB), K(BOB, kind=KeyKind.PGP))),
    Case("either, PGP preferred, both keys", {BOB: E_PGP},
         keys=(K(BOB), K(BOB, kind=KeyKind.PGP)), defaults=Rules(prefer=Method.PGP)),
    Case("either, only PGP key", {BOB: E_PGP}, keys=(K(BOB, kind=KeyKind.PGP),)),
    Case("method smime, only PGP key: mandatory rejects", {BOB: REJECT},
         keys=(K(BOB, kind=KeyKind.PGP),),
         users={BOB: Rules(method=Method.SMIME, encrypt=EncryptMode.MANDATORY)}),
    Case("method pgp per domain, both keys", {BOB: E_PGP},
         keys=(K(BOB), K(BOB, kind=KeyKind.PGP)),
         domains={"partner.example": Rules(method=Method.PGP)}),
    Case("PGP and S/MIME recipients are split", {BOB: E_PGP, CAROL: E_SMIME_CBC},
         rcpt=(BOB, CAROL), keys=(K(BOB, kind=KeyKind.PGP), K(CAROL)), groups=2),
    # signing
    Case("sign always for authenticated inside sender", {BOB: ("plain", "smime", "")},
         defaults=Rules(sign=SignMode.ALWAYS), sign=True),
    Case("sign always, encrypted copy is signed too", {BOB: E_SMIME_CBC},
         keys=(K(BOB),), defaults=Rules(sign=SignMode.ALWAYS), sign=True),
    Case("sign always but unauthenticated client: not signed", {BOB: PLAIN},
         client="203.0.113.9", defaults=Rules(sign=SignMode.ALWAYS), sign=False),
    Case("sign per sender user", {BOB: ("plain", "smime", "")},
         users={INSIDE: Rules(sign=SignMode.ALWAYS)}, sign=True),
    Case("sign with PGP when the recipient's method is PGP", {BOB: ("plain", "pgp", "")},
         defaults=Rules(sign=SignMode.ALWAYS), users={BOB: Rules(method=Method.PGP)}),
    # already encrypted, inbound
    Case("already S/MIME encrypted passes", {BOB: PASS}, defaults=MAND,
         content_type='application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"'),
    Case("already PGP encrypted passes", {BOB: PASS}, defaults=MAND,
         content_type='multipart/encrypted; protocol="application/pgp-encrypted"; '
                      'boundary="b"'),
    Case("opaque signed is not encrypted", {BOB: E_SMIME_CBC}, keys=(K(BOB),),
         content_type='application/pkcs7-mime; smime-type=signed-data; name="smime.p7m"'),
    Case("inbound mail to an inside recipient passes", {INSIDE: PASS}, rcpt=(INSIDE,),
         sender=BOB, client="203.0.113.9", keys=(K(INSIDE),), defaults=MAND),
]


@pytest.fixture(scope="module")
def directory_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("decide")


MakeDirectory = Callable[[str, tuple[K, ...]], SqliteKeyDirectory]


@pytest.fixture
def make_directory(directory_root: Path) -> Iterator[MakeDirectory]:
    opened: list[SqliteKeyDirectory] = []

    def make(name: str, keys: tuple[K, ...]) -> SqliteKeyDirectory:
        directory = SqliteKeyDirectory(directory_root / f"{abs(hash(name))}.sqlite3")
        for index, entry in enumerate(keys):
            record = entry.record(index + 1).evolve(last_seen=entry.seen)
            directory.put(record, entry.seen)
            if entry.state is not KeyState.ACTIVE:
                _force_state(directory, record, entry.state)
        opened.append(directory)
        return directory

    yield make
    for directory in opened:
        directory.close()


def _force_state(directory: SqliteKeyDirectory, record: KeyRecord, state: KeyState) -> None:
    if state is KeyState.HELD:
        directory.hold(record.fingerprint)
    else:
        directory.hold(record.fingerprint)
        with directory._transaction() as execute:  # retired is reached by release only
            execute("UPDATE mailroute_keys SET state = 'retired' WHERE fingerprint = ?",
                    (record.fingerprint,))


def _item(case: Case) -> MailItem:
    head = [f"From: {case.from_field or case.sender}", f"To: {', '.join(case.rcpt)}",
            f"Subject: {case.subject}", "MIME-Version: 1.0",
            f"Content-Type: {case.content_type}", *(f"{n}: {v}" for n, v in case.headers)]
    data = ("\r\n".join(head) + "\r\n\r\nbody\r\n").encode()
    item = MailItem(envelope=Envelope(mail_from=case.sender, rcpt_to=case.rcpt,
                                      client_address=case.client, auth_user=case.auth_user),
                    message=parse(data))
    for key, value in case.annotations:
        item = item.annotate(key, value)
    return item


def _policy(case: Case) -> CryptoPolicy:
    return CryptoPolicy(internal_domains=frozenset({"corp.example"}), defaults=case.defaults,
                        domains=case.domains, users=case.users, min_trust=case.min_trust,
                        trigger=Trigger(authenticated_networks=(
                            ipaddress.ip_network("10.0.0.0/8"),)))


def test_the_table_has_at_least_forty_cases() -> None:
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_decision(case: Case, make_directory: MakeDirectory) -> None:
    directory = make_directory(case.name, case.keys)
    plan = decide_crypto(_item(case), directory, _policy(case), now=NOW)
    got = {p.recipient: (p.action.value, p.method.value if p.method else "", p.cipher)
           for p in plan.recipients}
    assert got == dict(case.expect), [p.reasons for p in plan.recipients]
    for p in plan.recipients:
        assert p.reasons, "every recipient plan says why"
        if p.action is Action.ENCRYPT:
            assert len(p.keys) == 1
    if case.reason:
        assert any(case.reason in r for p in plan.recipients for r in p.reasons), \
            [p.reasons for p in plan.recipients]
    if case.sign is not None:
        assert all(p.sign is case.sign for p in plan.recipients if p.action is not Action.PASS)
    if case.triggered is not None:
        assert plan.triggered is case.triggered
        assert bool(plan.remove_subject_tag or plan.remove_header) is case.triggered
    if case.groups is not None:
        assert len(plan.groups) == case.groups
        assert plan.split is (case.groups > 1)


def test_an_ignored_trigger_is_noted_and_the_tag_stays() -> None:
    case = Case("x", {BOB: PLAIN}, subject="[secure] x", client="203.0.113.9")
    directory = SqliteKeyDirectory(Path(__import__("tempfile").mkdtemp()) / "k.sqlite3")
    plan = decide_crypto(_item(case), directory, _policy(case), now=NOW)
    directory.close()
    assert plan.remove_subject_tag == ""
    assert plan.notes == ("trigger ignored: the sender is not an authenticated internal "
                          "sender",)


def test_the_encrypt_groups_carry_every_key_of_their_recipients(make_directory: MakeDirectory
                                                                ) -> None:
    case = Case("groups", {}, rcpt=(BOB, CAROL, DAVE),
                keys=(K(BOB, fpr="b" * 64), K(CAROL, fpr="c" * 64)))
    directory = make_directory(case.name, case.keys)
    plan = decide_crypto(_item(case), directory, _policy(case), now=NOW)
    first, second = plan.groups
    assert (first.action, first.recipients, first.keys) == (
        Action.ENCRYPT, (BOB, CAROL), ("b" * 64, "c" * 64))
    assert (second.action, second.recipients) == (Action.PLAIN, (DAVE,))
    assert plan.refused() == ()
