"""SPF and DMARC as tables over a fake resolver (no DNS)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from mailroute.dkim import sign_message, verify_message
from mailroute.dkim.dmarc import evaluate, organizational_domain
from mailroute.dkim.spf import SpfLookups, SpfResult, check_host
from mailroute.dkim.verify import SignatureResult
from mailroute.errors import TemporaryError
from mailroute.mime.scan import parse
from mailroute.results import AuthStatus
from tests.dkim.conftest import NOW, DkimWorld, message


class FakeDns:
    """TXT, address and MX records from dicts; ``TIMEOUT`` raises a temporary error."""

    def __init__(self, txt: Mapping[str, Sequence[str]] = {},
                 addresses: Mapping[str, Sequence[str]] = {},
                 mx: Mapping[str, Sequence[str]] = {}) -> None:
        self.tables = {"txt": txt, "addresses": addresses, "mx": mx}
        self.asked: list[str] = []

    def get(self, table: str, name: str) -> list[str]:
        self.asked.append(name)
        found = list(self.tables[table].get(name, ()))
        if found == ["TIMEOUT"]:
            raise TemporaryError("timed out")
        return found

    def __call__(self, name: str) -> list[str]:
        return self.get("txt", name)

    def addresses(self, name: str) -> list[str]:
        return self.get("addresses", name)

    def mx(self, name: str) -> list[str]:
        return self.get("mx", name)

    def lookups(self) -> SpfLookups:
        return SpfLookups(self, self.addresses, self.mx)


SPF_TXT = {
    "example.net": ["v=spf1 ip4:192.0.2.0/24 include:_spf.example.net -all"],
    "_spf.example.net": ["v=spf1 ip6:2001:db8::/32 a:relay.example.net mx ~all"],
    "soft.example": ["v=spf1 ip4:192.0.2.1 ~all"],
    "neutral.example": ["v=spf1 ?all"],
    "redirect.example": ["v=spf1 redirect=soft.example"],
    "two.example": ["v=spf1 -all", "v=spf1 +all"],
    "bad.example": ["v=spf1 ip4:not-an-address -all"],
    "slow.example": ["TIMEOUT"],
    "loop.example": ["v=spf1 include:loop.example -all"],
    "macro.example": ["v=spf1 exists:%{i}.allow.macro.example -all"],
    "other.example": ["some unrelated text"],
}
ADDRESSES = {"relay.example.net": ["198.51.100.7"], "mx.example.net": ["198.51.100.25"],
             "203.0.113.9.allow.macro.example": ["127.0.0.2"]}
MX = {"_spf.example.net": ["mx.example.net"]}


@pytest.mark.parametrize(("ip", "sender", "expected"), [
    ("192.0.2.55", "a@example.net", "pass"),            # ip4
    ("2001:db8::1", "a@example.net", "pass"),           # include -> ip6
    ("198.51.100.7", "a@example.net", "pass"),          # include -> a:
    ("198.51.100.25", "a@example.net", "pass"),         # include -> mx
    ("203.0.113.1", "a@example.net", "fail"),           # -all
    ("203.0.113.1", "a@soft.example", "softfail"),
    ("203.0.113.1", "a@neutral.example", "neutral"),
    ("203.0.113.1", "a@redirect.example", "softfail"),
    ("192.0.2.1", "a@redirect.example", "pass"),
    ("203.0.113.1", "a@other.example", "none"),
    ("203.0.113.1", "a@unknown.example", "none"),
    ("203.0.113.1", "a@two.example", "permerror"),
    ("203.0.113.1", "a@bad.example", "permerror"),
    ("203.0.113.1", "a@loop.example", "permerror"),
    ("203.0.113.1", "a@slow.example", "temperror"),
    ("203.0.113.9", "a@macro.example", "pass"),
    ("203.0.113.8", "a@macro.example", "fail"),
    ("203.0.113.1", "", "none"),                         # null sender, no HELO
])
def test_spf_table(ip: str, sender: str, expected: str) -> None:
    dns = FakeDns(SPF_TXT, ADDRESSES, MX)
    assert check_host(dns.lookups(), ip, sender).result == expected


def test_spf_uses_helo_for_the_null_sender() -> None:
    dns = FakeDns(SPF_TXT, ADDRESSES, MX)
    assert check_host(dns.lookups(), "192.0.2.9", "", helo="example.net") == SpfResult(
        "pass", "example.net")


def test_spf_lookup_limit_is_a_permerror() -> None:
    txt = {f"d{i}.example": [f"v=spf1 include:d{i + 1}.example -all"] for i in range(12)}
    txt["d12.example"] = ["v=spf1 -all"]
    assert check_host(FakeDns(txt).lookups(), "192.0.2.1", "a@d0.example").result == "permerror"


def test_organizational_domain_uses_the_public_suffix_list() -> None:
    assert organizational_domain("mail.corp.example.co.uk") == "example.co.uk"
    assert organizational_domain("a.b.example.net") == "example.net"


def _dkim(domain: str, status: AuthStatus = AuthStatus.PASS) -> SignatureResult:
    return SignatureResult(status, "", domain=domain, selector="s", algorithm="rsa-sha256")


DMARC_TXT = {
    "_dmarc.example.net": ["v=DMARC1; p=reject; sp=quarantine"],
    "_dmarc.strict.example": ["v=DMARC1; p=reject; adkim=s; aspf=s"],
    "_dmarc.slow.example": ["TIMEOUT"],
    "_dmarc.none.example": ["v=DMARC1; p=none"],
}


@pytest.mark.parametrize(("author", "dkim", "spf", "expected", "policy"), [
    ("example.net", [_dkim("example.net")], None, "pass", "reject"),
    ("example.net", [_dkim("mail.example.net")], None, "pass", "reject"),    # relaxed
    ("example.net", [_dkim("other.example")], None, "fail", "reject"),       # not aligned
    ("example.net", [_dkim("example.net", AuthStatus.FAIL)], None, "fail", "reject"),
    ("example.net", [], SpfResult("pass", "bounce.example.net"), "pass", "reject"),
    ("example.net", [], SpfResult("softfail", "example.net"), "fail", "reject"),
    ("news.example.net", [], None, "fail", "quarantine"),                    # sp= inherited
    ("strict.example", [_dkim("mail.strict.example")], None, "fail", "reject"),
    ("strict.example", [_dkim("strict.example")], None, "pass", "reject"),
    ("strict.example", [], SpfResult("pass", "bounce.strict.example"), "fail", "reject"),
    ("none.example", [], None, "fail", "none"),
    ("nopolicy.example", [], None, "none", "none"),
    ("slow.example", [_dkim("slow.example")], None, "temperror", "none"),
])
def test_dmarc_table(author: str, dkim: list[SignatureResult], spf: SpfResult | None,
                     expected: str, policy: str) -> None:
    data = message().replace(b"alice@example.net", f"alice@{author}".encode())
    result = evaluate(parse(data), FakeDns(DMARC_TXT), dkim, spf)
    assert (result.result, result.policy) == (expected, policy)
    assert result.enforced == (expected == "fail" and policy in ("reject", "quarantine"))


def test_dmarc_over_a_real_signature(world: DkimWorld) -> None:
    signed = sign_message(parse(message()), world.rsa, domain="example.net", selector="rsa",
                          timestamp=NOW)
    dns = FakeDns({**{k: [v] for k, v in world.records.items()}, **DMARC_TXT})
    results = verify_message(signed, dns, now=NOW)
    verdict = evaluate(signed, dns, results, None)
    assert verdict.result == "pass"
    assert verdict.auth_result().properties == (("header.from", "example.net"),)


@pytest.mark.parametrize(("record", "draw", "policy", "reason_has_pct"), [
    ("v=DMARC1; p=reject; pct=100", 0.99, "reject", False),
    ("v=DMARC1; p=reject; pct=30", 0.29, "reject", False),       # sampled: held to p=
    ("v=DMARC1; p=reject; pct=30", 0.30, "quarantine", True),    # not sampled: one weaker
    ("v=DMARC1; p=quarantine; pct=0", 0.0, "none", True),
    ("v=DMARC1; p=none; pct=10", 0.99, "none", False),           # nothing weaker than none
])
def test_dmarc_pct_applies_the_policy_to_the_sampled_share_only(
        record: str, draw: float, policy: str, reason_has_pct: bool) -> None:
    dns = FakeDns({"_dmarc.example.net": [record]})
    result = evaluate(parse(message()), dns, [_dkim("other.example")], None,
                      sample=lambda: draw)
    assert (result.result, result.policy) == ("fail", policy)
    assert ("pct=" in result.reason) is reason_has_pct
    assert result.enforced is (policy != "none")


def test_dmarc_pct_never_weakens_a_pass() -> None:
    dns = FakeDns({"_dmarc.example.net": ["v=DMARC1; p=reject; pct=0"]})
    result = evaluate(parse(message()), dns, [_dkim("example.net")], None, sample=lambda: 0.99)
    assert (result.result, result.policy) == ("pass", "reject")


@pytest.mark.parametrize("helo", ["[192.0.2.9]", "192.0.2.9", "localhost", "", "a..b"])
def test_spf_ignores_a_helo_that_is_not_a_domain_name(helo: str) -> None:
    dns = FakeDns(SPF_TXT, ADDRESSES, MX)
    result = check_host(dns.lookups(), "192.0.2.9", "", helo=helo)
    assert result.result == "none"
    assert dns.asked == []


@pytest.mark.parametrize("pct", ["9" * 5000, "\u00b2", "\u0663", "1000"])
def test_a_dmarc_pct_that_is_no_small_ascii_number_counts_as_100(pct: str) -> None:
    """Found by the DKIM audit: 5,000 digits or ``²`` raised from ``int`` (an internal error
    a sender's own DNS could cause at every delivery attempt)."""
    dns = FakeDns({"_dmarc.example.net": [f"v=DMARC1; p=reject; pct={pct}"]})
    result = evaluate(parse(message()), dns, [_dkim("other.example")], None,
                      sample=lambda: 0.99)
    assert (result.result, result.policy) == ("fail", "reject")


@pytest.mark.parametrize("mechanism", ["a/" + "9" * 5000, "mx//" + "1" * 5000, "a/0032"])
def test_an_spf_prefix_length_of_many_digits_is_a_permerror(mechanism: str) -> None:
    dns = FakeDns({"long.example": [f"v=spf1 {mechanism} -all"]}, ADDRESSES, MX)
    assert check_host(dns.lookups(), "192.0.2.1", "a@long.example").result == "permerror"


def test_an_mx_mechanism_over_more_than_ten_mx_records_is_a_permerror() -> None:
    """RFC 7208 4.6.4 (found by the DKIM audit: the first ten were used)."""
    hosts = [f"mx{i}.many.example" for i in range(11)]
    dns = FakeDns({"many.example": ["v=spf1 mx -all"]}, {h: ["192.0.2.1"] for h in hosts},
                  {"many.example": hosts})
    assert check_host(dns.lookups(), "192.0.2.1", "a@many.example").result == "permerror"
    dns = FakeDns({"many.example": ["v=spf1 mx -all"]}, {h: ["192.0.2.1"] for h in hosts},
                  {"many.example": hosts[:10]})
    assert check_host(dns.lookups(), "192.0.2.1", "a@many.example").result == "pass"
