"""The assembler: policy TOML to a validated, frozen :class:`~mailroute.pipeline.Pipeline`.

It sits at the top of the library's layers: it knows every filter by name (the registry
below) and builds them from their options. Builders are imported only when a policy uses
them, so that an optional part's dependencies (beautifulsoup4 for disclaimers, python-gnupg
for PGP) are needed only by those who use it. A builder takes
:class:`~mailroute.config.options.Options`, returns a :class:`~mailroute.item.Filter` and
must call ``options.finish()``.

Layout (an empty file is a valid policy with no filters)::

    topology = "topology.toml"   # optional: shared values come from the topology file

    [limits]                # optional; any field of mailroute.Limits
    max_message_size = 52428800

    [parser]
    on_ambiguity = "reject" # or "record"

    [gateway]
    authserv_id = "mx.example.net"
    internal_domains = ["example.net"]
    state_dir = "/var/lib/mailroute"   # optional: the processed-message store shared by
                                       # every process (SQLite), the key directory, and the
                                       # quarantine
    processed_dsn_file = "pg.dsn"      # optional: the processed-message store in PostgreSQL
                                       # (several nodes); a 0600 file with the DSN
    quarantine_dir = "/var/lib/mailroute/quarantine"   # optional; default state_dir/quarantine

    [[pipeline]]
    filter = "disclaimer"   # then the filter's own options
    text = "footer.txt"
    [pipeline.when]         # optional condition
    direction = ["outbound"]
    sender_domain = ["example.net"]
    annotation = { "smime.authenticated" = "no" }   # facts left by earlier filters

    [crypto]                # optional: the encryption policy and the key directory
                            # (mailroute.cryptopolicy.config); needed by harvest-keys,
                            # encrypt-by-policy and sign-by-policy
"""

from __future__ import annotations

import importlib
import os
import re
import stat
import tomllib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from mailroute.config.options import Options
from mailroute.errors import ConfigError
from mailroute.gateway.processed import InMemoryProcessedStore
from mailroute.item import Context, Direction, Filter, ProcessedStore
from mailroute.limits import Limits
from mailroute.mime.scan import AmbiguityPolicy
from mailroute.pipeline import Condition, Conditional, Pipeline
from mailroute.records import fields

if TYPE_CHECKING:
    from pathlib import Path

    from mailroute.routing.topology import Topology

__all__ = ["FILTERS", "TOPOLOGY_OPTIONS", "FilterBuilder", "build_filter", "load_policy",
           "policy_from_mapping", "topology_value"]

FilterBuilder = Callable[[Options], Filter]

_TOP_LEVEL = {"topology", "limits", "parser", "gateway", "pipeline", "crypto"}
_CRYPTO_FILTERS = ("encrypt-by-policy", "sign-by-policy", "harvest-keys")
#: What a policy naming its topology takes from it when a filter does not set it:
#: option -> path into the topology (docs/configuration.md "Values from the topology").
TOPOLOGY_OPTIONS: dict[str, dict[str, str]] = {
    "marker-verify": {
        "field": "gateway.marker.header", "max_age": "gateway.marker.max_age_s",
        "max_future_skew": "gateway.marker.max_future_skew_s",
        "loop_window": "gateway.loop_window_s", "tenant_id": "tenant.tenant_id",
        "max_received": "gateway.max_received", "processed_limit": "gateway.processed_limit",
        "processed_ttl": "gateway.processed_cache_ttl_s",
        "strip_ms_headers": "gateway.strip_ms_headers", "bypass_header": "gateway.bypass_header",
    },
    "marker-set": {"field": "gateway.marker.header",
                   "processed_ttl": "gateway.processed_cache_ttl_s"},
}


# name -> (module, builder function, extra that provides its dependencies)
FILTERS: dict[str, tuple[str, str, str | None]] = {
    "headers": ("mailroute.filters.headers", "build", None),
    "dkim-sign": ("mailroute.filters.dkim", "build_sign", "dkim"),
    "dkim-verify": ("mailroute.filters.dkim", "build_verify", "dkim"),
    "arc-seal": ("mailroute.filters.arc", "build_seal", "dkim"),
    "pgp-sign": ("mailroute.filters.pgp", "build_sign", "pgp"),
    "pgp-encrypt": ("mailroute.filters.pgp", "build_encrypt", "pgp"),
    "pgp-decrypt": ("mailroute.filters.pgp", "build_decrypt", "pgp"),
    "pgp-verify": ("mailroute.filters.pgp", "build_verify", "pgp"),
    "disclaimer": ("mailroute.filters.disclaimer", "build", "html"),
    "marker-set": ("mailroute.filters.marker", "build_set", None),
    "marker-verify": ("mailroute.filters.marker", "build_verify", None),
    "smime-sign": ("mailroute.filters.smime", "build_sign", "smime"),
    "smime-encrypt": ("mailroute.filters.smime", "build_encrypt", "smime"),
    "smime-decrypt": ("mailroute.filters.smime", "build_decrypt", "smime"),
    "smime-verify": ("mailroute.filters.smime", "build_verify", "smime"),
    "harvest-keys": ("mailroute.filters.crypto", "build_harvest", "smime"),
    "encrypt-by-policy": ("mailroute.filters.crypto", "build_encrypt", "smime"),
    "sign-by-policy": ("mailroute.filters.crypto", "build_sign", "smime"),
}


def read_policy_text(source: str) -> str:
    """The text of the policy file ``source``.

    Raises:
        ConfigError: it cannot be read, is not UTF-8, or is no regular file (a FIFO named
            by mistake would wait for a writer for ever: it is opened without blocking).
    """
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, encoding="utf-8") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ConfigError("cannot read the policy: not a regular file", source=source)
            return handle.read()
    except OSError as exc:
        raise ConfigError(f"cannot read the policy: {exc.strerror or type(exc).__name__}",
                          source=source) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError("cannot read the policy: not UTF-8", source=source) from exc


def load_policy(path: str | os.PathLike[str]) -> Pipeline:
    """Load and validate a policy file.

    Raises:
        ConfigError: the file cannot be read, is not TOML, or holds an invalid setting; the
            message names the file, the key path and, where it can be found, the line.
    """
    source = os.fspath(path)
    text = read_policy_text(source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", source=source) from exc
    try:
        return policy_from_mapping(data, source=source,
                                   base_dir=os.path.dirname(source) or os.curdir)
    except ConfigError as exc:
        line = _locate(text, exc.key)
        if line is None:
            raise
        raise ConfigError(str(exc).split(": ", 2)[-1], source=f"{source}:{line}",
                          key=exc.key) from exc


def policy_from_mapping(data: Mapping[str, object], *, source: str = "<policy>",
                        base_dir: str | os.PathLike[str] | None = None) -> Pipeline:
    """Build a pipeline from already-parsed policy data (see :func:`load_policy`)."""
    top = Options(data, source=source, base_dir=base_dir)
    topology_file, topology = _topology(top)
    limits = _limits(Options(top.table("limits"), source=source, prefix="limits"))
    parser = Options(top.table("parser"), source=source, prefix="parser")
    on_ambiguity = AmbiguityPolicy(parser.choice("on_ambiguity", ("reject", "record"),
                                                 "reject"))
    parser.finish()
    gateway = Options(top.table("gateway"), source=source, prefix="gateway", base_dir=base_dir)
    authserv_id = gateway.string("authserv_id", "mailroute")
    if not re.fullmatch(r"[A-Za-z0-9.-]+", authserv_id):
        raise gateway.error("authserv_id", "must be a host name")
    internal = frozenset(d.lower() for d in gateway.string_list(
        "internal_domains", topology.org_domains if topology is not None else ()))
    processed, quarantine_dir = _state(gateway)
    state_dir = gateway.optional_path("state_dir")
    gateway.finish()
    keys = _crypto(top, internal, state_dir)
    entries = top.raw("pipeline", [])
    if not isinstance(entries, list):
        raise top.error("pipeline", "must be an array of tables ([[pipeline]])")
    filters: list[Filter] = []
    for index, entry in enumerate(entries):
        prefix = f"pipeline[{index}]"
        if not isinstance(entry, Mapping):
            raise ConfigError("must be a table", source=source, key=prefix)
        values = {k: v for k, v in entry.items() if k != "when"}
        if topology is not None:
            values = {**_inherited(topology, values.get("filter")), **values}
        options = Options(values, source=source, prefix=prefix, base_dir=base_dir,
                          inherited={"authserv_id": authserv_id, "internal_domains": internal})
        name = options.string("filter")
        if name in _CRYPTO_FILTERS and not keys:
            raise options.error("filter", f"filter {name!r} needs a [crypto] section")
        step = build_filter(name, options)
        options.finish()
        if topology is not None:
            _check_tag(step, topology, options)
        if "when" in entry:
            when = entry["when"]
            if not isinstance(when, Mapping):
                raise ConfigError("must be a table", source=source, key=f"{prefix}.when")
            condition = _condition(Options(when, source=source, prefix=f"{prefix}.when"))
            step = Conditional(step, condition)
        filters.append(step)
    top.finish()
    context = Context(limits=limits, processed=processed, keys=keys)
    return Pipeline(filters=tuple(filters), limits=limits, on_ambiguity=on_ambiguity,
                    internal_domains=internal, authserv_id=authserv_id, context=context,
                    quarantine_dir=quarantine_dir, topology_file=topology_file)


def _topology(top: Options) -> tuple[Path | None, Topology | None]:
    """The topology the policy names (``topology = "FILE"``): its path, and the topology
    loaded and validated."""
    path = top.optional_path("topology")
    if path is None:
        return None, None
    from mailroute.routing.load import load_topology  # only for policies that name one

    try:
        return path, load_topology(path)
    except ConfigError as exc:
        raise top.error("topology", str(exc)) from exc


def topology_value(topology: Topology, path: str) -> object:
    """The value at dotted ``path`` (``gateway.marker.tag``) of a topology."""
    value: object = topology
    for part in path.split("."):
        value = getattr(value, part)
    return value


def _inherited(topology: Topology, name: object) -> dict[str, object]:
    wanted = TOPOLOGY_OPTIONS.get(name, {}) if isinstance(name, str) else {}
    values = {option: topology_value(topology, path) for option, path in wanted.items()}
    return {option: value for option, value in values.items() if value is not None}


def _check_tag(step: Filter, topology: Topology, options: Options) -> None:
    """A marker key file's tag must be the topology's: Exchange rules match that tag."""
    ring = getattr(step, "ring", None)
    tag = getattr(ring, "tag", None)
    if tag is not None and tag != topology.gateway.marker.tag:
        raise options.error("key_file", f"the key file's tag {tag!r} is not the topology's "
                                        f"[gateway.marker] tag "
                                        f"{topology.gateway.marker.tag!r}")


def build_filter(name: str, options: Options) -> Filter:
    """Build filter ``name`` from ``options``.

    Raises:
        ConfigError: unknown filter name, a missing optional dependency, or bad options.
    """
    entry = FILTERS.get(name)
    if entry is None:
        raise options.error("filter", f"unknown filter {name!r}; the filters are "
                                      f"{', '.join(sorted(FILTERS))}")
    module_name, function, extra = entry
    try:
        module = importlib.import_module(module_name)
        builder: FilterBuilder = getattr(module, function)
        return builder(options)  # a builder may import more of the extra (dnspython)
    except ImportError as exc:
        hint = f"; install mailroute[{extra}]" if extra else ""
        raise options.error("filter", f"filter {name!r} is not available ({exc.name}{hint})"
                            ) from exc
    except ConfigError as exc:
        # A file an option names (a certificate, key or template) is at fault: say which
        # option, so that the policy's file and line are found as for any other error.
        option = options.key_of_file(exc.source) if exc.key is None else None
        if option is None:
            raise
        raise options.error(option, str(exc)) from exc
    except (ValueError, OSError) as exc:
        raise options.error("filter", f"cannot build filter {name!r}: {exc}") from exc


def _crypto(top: Options, internal: frozenset[str], state_dir: Path | None
            ) -> dict[str, object]:
    """The ``[crypto]`` section: the encryption policy and the key directory, for the
    context (empty without the section; the engine is imported only when it is there)."""
    if not top.has("crypto"):
        return {}
    from mailroute.cryptopolicy.config import crypto_from_options, open_directory
    from mailroute.cryptopolicy.model import DIRECTORY_KEY, POLICY_KEY
    section = Options(top.table("crypto"), source=top.source, prefix="crypto",
                      base_dir=top.base_dir)
    policy = crypto_from_options(section, internal)
    directory = open_directory(Options(section.table("directory"), source=top.source,
                                       prefix="crypto.directory", base_dir=top.base_dir),
                               state_dir)
    return {POLICY_KEY: policy, DIRECTORY_KEY: directory}


def _state(gateway: Options) -> tuple[ProcessedStore, Path | None]:
    """``state_dir`` (the SQLite processed-message store shared by every process, and the
    default quarantine) and ``quarantine_dir``; ``processed_dsn_file`` puts the store in
    PostgreSQL instead (several gateway nodes); without either it lives in this process."""
    state_dir = gateway.optional_path("state_dir")
    quarantine_dir = gateway.optional_path("quarantine_dir")
    dsn_file = gateway.optional_path("processed_dsn_file")
    if dsn_file is not None:
        from mailroute.gateway.postgres_store import PostgresProcessedStore
        from mailroute.keys.secretfile import read_secret_line
        store: ProcessedStore = PostgresProcessedStore(
            read_secret_line(dsn_file, what="database DSN file"))
        return store, quarantine_dir or (state_dir / "quarantine" if state_dir else None)
    if state_dir is None:
        return InMemoryProcessedStore(), quarantine_dir
    # imported here: a policy without state_dir does not load sqlite3 (start-up time)
    from mailroute.gateway.sqlite_store import PROCESSED_FILE, SqliteProcessedStore
    store = SqliteProcessedStore(state_dir / PROCESSED_FILE)
    return store, quarantine_dir or state_dir / "quarantine"


def _limits(options: Options) -> Limits:
    values = {f.name: options.integer(f.name, f.default, minimum=1)
              for f in fields(Limits)}
    options.finish()
    return Limits(**values)


def _condition(options: Options) -> Condition:
    directions = options.string_list("direction")
    try:
        parsed = frozenset(Direction(d) for d in directions)
    except ValueError as exc:
        raise options.error("direction", "must be inbound, outbound or internal") from exc
    condition = Condition(
        directions=parsed,
        sender_domains=_lower(options.string_list("sender_domain")),
        recipient_domains=_lower(options.string_list("recipient_domain")),
        senders=_lower(options.string_list("sender")),
        recipients=_lower(options.string_list("recipient")),
        annotations=_annotations(options),
        authenticated=options.optional_boolean("authenticated"),
    )
    options.finish()
    return condition


def _annotations(options: Options) -> frozenset[tuple[str, str]]:
    table = options.table("annotation")
    for key, value in table.items():
        if not isinstance(value, str):
            raise options.error(f"annotation.{key}", "must be a string")
    return frozenset((key, str(value)) for key, value in table.items())


def _lower(values: tuple[str, ...]) -> frozenset[str]:
    return frozenset(v.lower() for v in values)


def _locate(text: str, key: str | None) -> int | None:
    """The line of ``key`` (``pipeline[2].add.X-Foo``, ``crypto.domains."a.example".encrypt``)
    in the TOML text, when it can be found.

    Looks inside the key's table (``[[pipeline]]`` number 2, or the deepest ``[a.b."c"]``
    header the key path starts with) for the deepest key part that stands before an ``=``;
    the table header's line is the fallback.
    """
    if not key:
        return None
    parts = _key_parts(key)
    lines = text.splitlines()
    start, stop = 0, len(lines)
    table = re.fullmatch(r"(\w+)\[(\d+)\]", parts[0])
    if table:
        header = f"[[{table.group(1)}]]"
        headers = [n for n, line in enumerate(lines) if line.strip() == header]
        found_table = int(table.group(2)) < len(headers)
        if found_table:
            start = headers[int(table.group(2))]
            later = [n for n, line in enumerate(lines) if n > start and line.strip() == header]
            stop = later[0] if later else len(lines)
            parts = parts[1:]
    else:
        found_table, depth = False, 0
        for number, line in enumerate(lines):
            named = _header_parts(line)
            if named and len(named) > depth and parts[:len(named)] == named:
                found_table, depth, start = True, len(named), number
        if found_table:
            stop = next((n for n in range(start + 1, len(lines))
                         if _header_parts(lines[n])), len(lines))
            parts = parts[depth:]
    for part in reversed(parts):
        pattern = re.compile(rf"(^|[\s{{,])\"?{re.escape(part)}\"?\s*=")
        for number in range(start, stop):
            if pattern.search(lines[number]):
                return number + 1
    return start + 1 if found_table else None


def _key_parts(path: str) -> list[str]:
    """``a.b."c.d".e`` -> ``["a", "b", "c.d", "e"]``."""
    return [quoted or bare for quoted, bare in
            re.findall(r'\s*(?:"([^"]*)"|([^."\s]+))\s*(?:\.|$)', path)]


def _header_parts(line: str) -> list[str] | None:
    """The key path of a ``[table]`` header line, or ``None`` for any other line."""
    match = re.fullmatch(r"\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?", line)
    return _key_parts(match.group(1)) if match else None
