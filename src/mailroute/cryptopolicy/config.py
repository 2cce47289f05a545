"""The ``[crypto]`` section of a policy file: the encryption policy and the key directory.

::

    [crypto]
    min_trust = "harvested"            # lowest trust a key needs: harvested, verified, manual

    [crypto.defaults]                  # organisation-wide; every key optional
    sign = "never"                     # never, always (for the sender)
    encrypt = "opportunistic"          # never, opportunistic, mandatory (for the recipient)
    method = "either"                  # smime, pgp, either
    prefer = "smime"                   # under "either", when both keys exist
    ciphers = ["aes-256-gcm", "aes-128-gcm", "aes-256-cbc"]   # GCM only when advertised
    on_missing_key = "reject"          # reject, hold, notify (mandatory without a key)

    [crypto.domains."partner.example"] # same keys; covers subdomains
    encrypt = "mandatory"

    [crypto.users."ceo@partner.example"]
    method = "pgp"

    [crypto.trigger]
    subject_tag = "[secure]"           # "" turns it off
    header = "X-Mailroute-Encrypt"     # "" turns it off
    encrypt = "mandatory"
    authenticated_networks = ["10.0.0.0/8"]
    authenticated_peers = ["exchange.corp.example"]

    [crypto.directory]
    backend = "sqlite"                 # or "postgres"
    path = "/var/lib/mailroute/keys.sqlite3"   # default: [gateway] state_dir/keys.sqlite3
    dsn_file = "/etc/mailroute/pg.dsn" # postgres: a 0600 file holding the connection string
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path

from mailroute.config.options import Options
from mailroute.cryptopolicy.model import (
    CIPHERS,
    CryptoPolicy,
    EncryptMode,
    Method,
    MissingKeyAction,
    Rules,
    SignMode,
    Trigger,
)
from mailroute.errors import ConfigError
from mailroute.keys.directory import KeyDirectory, Trust
from mailroute.keys.secretfile import read_secret_line

__all__ = ["crypto_from_options", "open_directory"]


def crypto_from_options(options: Options, internal_domains: frozenset[str]) -> CryptoPolicy:
    """The encryption policy of a ``[crypto]`` table (``options`` has prefix ``crypto``).

    Raises:
        ConfigError: an unknown key or a bad value, naming the key path.
    """
    policy = CryptoPolicy(
        internal_domains=internal_domains,
        defaults=_rules(_sub(options, "defaults")),
        domains=_entries(options, "domains"),
        users=_entries(options, "users"),
        trigger=_trigger(_sub(options, "trigger")),
        min_trust=Trust(options.choice("min_trust", tuple(t.value for t in Trust),
                                       Trust.HARVESTED.value)),
    )
    options.table("directory")  # read by open_directory
    options.finish()
    return policy


def _sub(options: Options, name: str) -> Options:
    return Options(options.table(name), source=options.source,
                   prefix=options.key_path(name), base_dir=options.base_dir)


def _entries(options: Options, name: str) -> Mapping[str, Rules]:
    table = options.table(name)
    found: dict[str, Rules] = {}
    for key, value in table.items():
        prefix = f'{options.key_path(name)}."{key}"'
        if not isinstance(value, Mapping):
            raise ConfigError("must be a table", source=options.source, key=prefix)
        found[key.strip().lower()] = _rules(Options(value, source=options.source,
                                                    prefix=prefix))
    return found


def _rules(options: Options) -> Rules:
    def pick(name: str, kind: type[SignMode] | type[EncryptMode] | type[Method]
             | type[MissingKeyAction]) -> str | None:
        if not options.has(name):
            options.raw(name, None)
            return None
        return options.choice(name, tuple(v.value for v in kind))

    ciphers = None
    if options.has("ciphers"):
        ciphers = options.string_list("ciphers")
        unknown = [c for c in ciphers if c not in CIPHERS]
        if unknown or not ciphers:
            raise options.error("ciphers", f"must name some of {', '.join(CIPHERS)}")
    sign, encrypt = pick("sign", SignMode), pick("encrypt", EncryptMode)
    method, prefer = pick("method", Method), pick("prefer", Method)
    missing = pick("on_missing_key", MissingKeyAction)
    if prefer == Method.EITHER.value:
        raise options.error("prefer", "must be smime or pgp")
    options.finish()
    return Rules(sign=SignMode(sign) if sign else None,
                 encrypt=EncryptMode(encrypt) if encrypt else None,
                 method=Method(method) if method else None,
                 prefer=Method(prefer) if prefer else None, ciphers=ciphers,
                 on_missing_key=MissingKeyAction(missing) if missing else None)


def _trigger(options: Options) -> Trigger:
    networks = []
    for text in options.string_list("authenticated_networks"):
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise options.error("authenticated_networks",
                                f"{text!r} is not an address range") from None
    base = Trigger()
    trigger = Trigger(
        subject_tag=options.string("subject_tag", base.subject_tag),
        header=options.string("header", base.header),
        encrypt=EncryptMode(options.choice("encrypt", ("opportunistic", "mandatory"),
                                           base.encrypt.value)),
        authenticated_networks=tuple(networks),
        authenticated_peers=frozenset(p.lower() for p in
                                      options.string_list("authenticated_peers")))
    if trigger.header and not all(33 <= ord(c) <= 126 and c != ":" for c in trigger.header):
        raise options.error("header", "must be a header field name")
    options.finish()
    return trigger


def open_directory(options: Options, state_dir: Path | None) -> KeyDirectory:
    """The key directory a ``[crypto.directory]`` table names (``options`` has prefix
    ``crypto.directory``); nothing is opened until first use.

    Raises:
        ConfigError: no location, an unreadable DSN file, or psycopg missing for postgres.
    """
    backend = options.choice("backend", ("sqlite", "postgres"), "sqlite")
    if backend == "postgres":
        dsn = read_secret_line(options.path("dsn_file"), what="database DSN file")
        options.finish()
        from mailroute.keys.postgres_directory import PostgresKeyDirectory
        return PostgresKeyDirectory(dsn)
    from mailroute.keys.sqlite_directory import KEYS_FILE, SqliteKeyDirectory
    path = options.optional_path("path")
    if path is None:
        if state_dir is None:
            raise options.error("path", "is required without [gateway] state_dir")
        path = state_dir / KEYS_FILE
    options.finish()
    return SqliteKeyDirectory(path)
