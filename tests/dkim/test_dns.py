"""The dnspython lookup against a throwaway DNS server on 127.0.0.1 (no public DNS): TXT, A,
AAAA and MX answers, NXDOMAIN as "no record", and a silent server as a timeout, which the
verifier reports as temperror."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from mailroute.dkim import sign_message, verify_message
from mailroute.dkim.dns import DnsLookup
from mailroute.dkim.spf import SpfLookups, check_host
from mailroute.errors import TemporaryError
from mailroute.mime.scan import parse
from mailroute.results import AuthStatus
from tests.dkim.conftest import NOW, DkimWorld, message


class _Server:
    """Answers from ``records`` ((name, type) -> texts) until stopped; ``silent`` drops all."""

    def __init__(self, records: dict[tuple[str, str], list[str]], silent: bool = False) -> None:
        self.records = records
        self.silent = silent
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def serve(self) -> None:
        while not self.stopped.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            if self.silent:
                continue
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text().rstrip(".")
            kind = dns.rdatatype.to_text(question.rdtype)
            texts = self.records.get((name, kind))
            if texts is None and not any(n == name for n, _ in self.records):
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif texts:
                response.answer.append(dns.rrset.from_text_list(
                    question.name, 60, "IN", kind, texts))
            self.sock.sendto(response.to_wire(), peer)


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[_Server]:
    records, silent = request.param
    running = _Server(records, silent)
    running.thread.start()
    yield running
    running.stopped.set()
    running.thread.join(timeout=5)
    running.sock.close()


def _quoted(text: str) -> str:
    return " ".join(f'"{text[i:i + 200]}"' for i in range(0, len(text), 200))


RECORDS = {
    ("example.net", "TXT"): ['"v=spf1 a mx -all"'],
    ("example.net", "A"): ["192.0.2.1"],
    ("example.net", "MX"): ["20 mx2.example.net.", "10 mx1.example.net."],
    ("mx1.example.net", "AAAA"): ["2001:db8::25"],
    ("mx2.example.net", "A"): ["192.0.2.26"],
}


@pytest.mark.parametrize("server", [(RECORDS, False)], indirect=True)
def test_txt_addresses_and_mx(server: _Server) -> None:
    lookup = DnsLookup(2.0, nameservers=["127.0.0.1"], port=server.port)
    assert lookup("example.net") == ["v=spf1 a mx -all"]
    assert lookup("nothing.example.net") == []
    assert lookup.mx("example.net") == ["mx1.example.net", "mx2.example.net"]
    assert lookup.addresses("mx1.example.net") == ["2001:db8::25"]
    spf = SpfLookups(lookup, lookup.addresses, lookup.mx)
    assert check_host(spf, "2001:db8::25", "a@example.net").result == "pass"
    assert check_host(spf, "192.0.2.1", "a@example.net").result == "pass"
    assert check_host(spf, "192.0.2.99", "a@example.net").result == "fail"


def test_a_long_key_record_is_joined(world: DkimWorld) -> None:
    record = world.records["rsa._domainkey.example.net"]
    records = {("rsa._domainkey.example.net", "TXT"): [_quoted(record)]}
    running = _Server(records)
    running.thread.start()
    try:
        lookup = DnsLookup(2.0, nameservers=["127.0.0.1"], port=running.port)
        signed = sign_message(parse(message()), world.rsa, domain="example.net",
                              selector="rsa", timestamp=NOW)
        assert [r.status for r in verify_message(signed, lookup, now=NOW)] == [AuthStatus.PASS]
    finally:
        running.stopped.set()
        running.thread.join(timeout=5)
        running.sock.close()


@pytest.mark.parametrize("server", [({}, True)], indirect=True)
def test_a_silent_server_is_a_timeout_and_temperror(server: _Server, world: DkimWorld) -> None:
    lookup = DnsLookup(0.5, nameservers=["127.0.0.1"], port=server.port)
    with pytest.raises(TemporaryError):
        lookup("rsa._domainkey.example.net")
    signed = sign_message(parse(message()), world.rsa, domain="example.net", selector="rsa",
                          timestamp=NOW)
    results = verify_message(signed, lookup, now=NOW)
    assert [(r.status, r.reason) for r in results] == [(AuthStatus.TEMPERROR,
                                                        "key lookup failed")]


def test_a_dns_file_carries_address_and_mx_records_for_spf() -> None:
    from mailroute.dkim.dns import parse_dns_file

    dns = parse_dns_file(
        "example.net v=spf1 a mx:example.net -all\n"
        "example.net A 192.0.2.10\n"
        "example.net AAAA 2001:db8::10\n"
        "example.net MX 20 backup.example.net\n"
        "example.net MX 10 mx.example.net.\n"
        "mx.example.net A 192.0.2.25\n"
        "backup.example.net A 192.0.2.26\n"
        "odd.example A not-an-address\n"
        "odd.example AAAA 192.0.2.1\n")
    assert dns("example.net") == ["v=spf1 a mx:example.net -all"]
    assert dns.addresses("example.net") == ["192.0.2.10", "2001:db8::10"]
    assert dns.mx("example.net") == ["mx.example.net", "backup.example.net"]
    # values that are not well-formed records of their type stay TXT
    assert dns("odd.example") == ["A not-an-address", "AAAA 192.0.2.1"]
    assert dns.addresses("odd.example") == []
    lookups = SpfLookups(dns, dns.addresses, dns.mx)
    assert [check_host(lookups, ip, "a@example.net").result
            for ip in ("192.0.2.10", "2001:db8::10", "192.0.2.26", "192.0.2.99")] == [
        "pass", "pass", "pass", "fail"]
