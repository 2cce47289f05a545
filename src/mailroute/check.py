"""``mailroute check``: a policy, the files it names, and its topology, checked before use.

:func:`check_policy` returns findings, each an error or a warning naming file and key:

- the policy must load (every check :func:`mailroute.policy.load_policy` makes);
- every secret file a filter names (``key_file``, ``key``, ``passphrase_file``) must exist,
  be a regular file and be readable by its owner only; each is checked on its own, so one
  run lists every such problem, not just the first;
- certificates (``cert``, ``chain``, ``recipient_cert``, ``trust``, the ``cert_dir`` files):
  expired is an error, expiring within ``warn_days`` a warning;
- the key file of ``marker-set``: no key may sign now is an error, no key may sign
  ``warn_days`` from now a warning (``mailroute marker rotate`` adds one);
- with a topology (``--topology``, or the policy's ``topology`` key): the marker tag, header
  field, loop window, maximum age and tenant id of the marker filters must equal the
  topology's, and ``[gateway] internal_domains`` should.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

from cryptography import x509

from mailroute.errors import ConfigError
from mailroute.keys.secretfile import read_public_file, read_secret_file
from mailroute.marker.keyring import MarkerKey, load_key_ring
from mailroute.pipeline import Conditional, Pipeline
from mailroute.policy import TOPOLOGY_OPTIONS, load_policy, read_policy_text, topology_value
from mailroute.records import record
from mailroute.routing.load import load_topology
from mailroute.routing.topology import Topology

__all__ = ["Finding", "check_policy"]

#: Options that name a secret file, and those that name certificates.
SECRET_OPTIONS = ("key_file", "key", "passphrase_file")
CERT_OPTIONS = ("cert", "chain", "recipient_cert", "trust")
_CERT_SUFFIXES = (".pem", ".crt", ".cer")
DAY = 86400.0


@record(frozen=True)
class Finding:
    """One problem: ``error`` (the policy must not be used) or ``warning`` (act soon)."""

    severity: str
    source: str
    key: str | None
    message: str

    def __str__(self) -> str:
        where = ": ".join(p for p in (self.source, self.key) if p)
        return f"{self.severity}: {where}: {self.message}"


def check_policy(policy: Path, *, topology: Path | None = None, now: float,
                 warn_days: int = 30) -> list[Finding]:
    """Every finding for ``policy`` (and ``topology``, else the one the policy names)."""
    findings: list[Finding] = []
    try:
        data = tomllib.loads(read_policy_text(str(policy)))
    except ConfigError as error:
        return [Finding("error", str(policy), None, _message_of(error))]
    except tomllib.TOMLDecodeError as exc:
        return [Finding("error", str(policy), None, f"cannot read the policy: {exc}")]
    entries = [e for e in data.get("pipeline", []) if isinstance(e, Mapping)]
    base = policy.parent
    horizon = now + warn_days * DAY
    for index, entry in enumerate(entries):
        findings += _entry_files(entry, f"pipeline[{index}]", base, str(policy), now, horizon)
    named = data.get("topology")
    if topology is None and isinstance(named, str):
        topology = base / named
    if topology is not None:
        findings += _topology_findings(data, entries, base, policy, topology)
    try:
        pipeline = load_policy(policy)
    except ConfigError as error:  # unless a finding above already says it
        if not any(f.severity == "error" and f.key == error.key for f in findings):
            findings.append(Finding("error", error.source or str(policy), error.key,
                                    _message_of(error)))
        return findings
    findings += _preflight(pipeline, policy)
    return findings


def _preflight(pipeline: Pipeline, policy: Path) -> Iterator[Finding]:
    """What filters find when they look at their keys for real (a PGP signer's secret key
    in the key store): a filter with a ``preflight`` method returns ``(option, problem)``."""
    for index, step in enumerate(pipeline.filters):
        inner = step.inner if isinstance(step, Conditional) else step
        preflight = getattr(inner, "preflight", None)
        if preflight is None:
            continue
        for option, problem in preflight():
            yield Finding("error", str(policy), f"pipeline[{index}].{option}", problem)


def _message_of(error: ConfigError) -> str:
    prefix = ": ".join(p for p in (error.source, error.key) if p)
    text = str(error)
    return text[len(prefix) + 2:] if prefix and text.startswith(prefix + ": ") else text


def _paths(entry: Mapping[str, object], name: str, base: Path) -> list[Path]:
    value = entry.get(name)
    values = value if isinstance(value, list) else [value]
    return [base / v for v in values if isinstance(v, str)]


def _entry_files(entry: Mapping[str, object], prefix: str, base: Path, policy: str,
                 now: float, horizon: float) -> Iterator[Finding]:
    for name in SECRET_OPTIONS:
        for path in _paths(entry, name, base):
            try:
                read_secret_file(path, what=name.replace("_", " "))
            except ConfigError as error:
                yield Finding("error", str(path), f"{prefix}.{name}", _message_of(error))
    for name in CERT_OPTIONS:
        for path in _paths(entry, name, base):
            yield from _certificates(path, f"{prefix}.{name}", now, horizon)
    for folder in _paths(entry, "cert_dir", base):
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() in _CERT_SUFFIXES:
                    yield from _certificates(path, f"{prefix}.cert_dir", now, horizon)
    window = _MARKER_WINDOWS.get(str(entry.get("filter")))
    if window is not None:
        for path in _paths(entry, "key_file", base):
            yield from _marker_keys(path, f"{prefix}.key_file", window, now=now,
                                    horizon=horizon)


def _certificates(path: Path, key: str, now: float, horizon: float) -> Iterator[Finding]:
    try:
        data = read_public_file(path)
    except ConfigError as error:
        yield Finding("error", str(path), key, _message_of(error))
        return
    try:
        certificates = x509.load_pem_x509_certificates(data) if b"-----BEGIN" in data else [
            x509.load_der_x509_certificate(data)]
    except ValueError:
        yield Finding("error", str(path), key, "holds no readable certificate")
        return
    for certificate in certificates:
        end = certificate.not_valid_after_utc.timestamp()
        subject = certificate.subject.rfc4514_string() or "(empty subject)"
        if end <= now:
            yield Finding("error", str(path), key,
                          f"certificate {subject} expired on {_date(end)}")
        elif end <= horizon:
            yield Finding("warning", str(path), key,
                          f"certificate {subject} expires on {_date(end)} "
                          f"(in {int((end - now) // DAY)} days)")


class _MarkerWindow(NamedTuple):
    """What ``check`` says of a marker key file, for the filter that uses it."""

    usable: Callable[[MarkerKey, float], bool]
    end: Callable[[MarkerKey], float]
    none_now: str
    none_later: str  # with {date} and {days}


#: marker-set needs a key that may sign; marker-verify one that verifies (once none does,
#: every marker reads unknown-key, and on_missing = "reject" refuses all mail).
_MARKER_WINDOWS = {
    "marker-set": _MarkerWindow(
        MarkerKey.may_sign, lambda k: k.sign_until,
        "no marker key may sign now: marker-set answers 4.3.0 (run mailroute marker rotate)",
        "no marker key may sign after {date} (in {days} days): run mailroute marker rotate"),
    "marker-verify": _MarkerWindow(
        MarkerKey.may_verify, lambda k: k.verify_until,
        "no marker key verifies now: every marker reads unknown-key (add the signing "
        "gateway's current key)",
        "no marker key verifies after {date} (in {days} days): add the signing gateway's "
        "next key"),
}


def _marker_keys(path: Path, key: str, window: _MarkerWindow, *, now: float,
                 horizon: float) -> Iterator[Finding]:
    """The signing or verification windows of a marker key file."""
    try:
        ring = load_key_ring(path)
    except ConfigError:
        return  # reported by the secret-file check or by loading the policy
    usable = [k for k in ring.keys if window.usable(k, now)]
    if not usable:
        yield Finding("error", str(path), key, window.none_now)
    elif not any(window.usable(k, horizon) for k in ring.keys):
        last = max(window.end(k) for k in usable)
        yield Finding("warning", str(path), key, window.none_later.format(
            date=_date(last), days=int((last - now) // DAY)))


def _topology_findings(data: Mapping[str, object], entries: list[Mapping[str, object]],
                       base: Path, policy: Path, path: Path) -> list[Finding]:
    try:
        topology = load_topology(path)
    except ConfigError as error:
        return [Finding("error", error.source or str(path), error.key, _message_of(error))]
    findings = []
    for index, entry in enumerate(entries):
        name = entry.get("filter")
        if not isinstance(name, str) or name not in TOPOLOGY_OPTIONS:
            continue
        for option, where in TOPOLOGY_OPTIONS[name].items():
            if option in entry and entry[option] != topology_value(topology, where):
                findings.append(Finding(
                    "error", str(policy), f"pipeline[{index}].{option}",
                    f"is {entry[option]!r}, the topology {path} has {where} = "
                    f"{topology_value(topology, where)!r}"))
        for key_path in _paths(entry, "key_file", base):
            findings += _tag_finding(key_path, f"pipeline[{index}].key_file", topology, path)
    findings += _domains_finding(data, topology, policy, path)
    return findings


def _tag_finding(key_path: Path, key: str, topology: Topology, path: Path) -> list[Finding]:
    try:
        tag = load_key_ring(key_path).tag
    except ConfigError:
        return []
    wanted = topology.gateway.marker.tag
    if tag == wanted:
        return []
    return [Finding("error", str(key_path), key,
                    f"tag {tag!r} is not the topology's [gateway.marker] tag {wanted!r} "
                    f"({path}): Exchange rules would not recognise the marker")]


def _domains_finding(data: Mapping[str, object], topology: Topology, policy: Path,
                     path: Path) -> list[Finding]:
    gateway = data.get("gateway")
    domains = gateway.get("internal_domains") if isinstance(gateway, Mapping) else None
    if not isinstance(domains, list):
        return []
    ours = {str(d).lower() for d in domains}
    theirs = {d.lower() for d in topology.org_domains}
    if ours == theirs:
        return []
    return [Finding("warning", str(policy), "gateway.internal_domains",
                    f"{sorted(ours)} differs from the topology's domains {sorted(theirs)} "
                    f"({path}): the direction of a message may differ from the simulator's")]


def _date(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%d")
