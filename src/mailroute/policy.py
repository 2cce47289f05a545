"""The assembler: policy TOML to a validated, frozen :class:`~mailroute.pipeline.Pipeline`.

It sits at the top of the library's layers: it knows every filter by name (the registry
below) and builds them from their options. Builders are imported only when a policy uses
them, so that an optional part's dependencies (beautifulsoup4 for disclaimers, python-gnupg
for PGP) are needed only by those who use it. A builder takes
:class:`~mailroute.config.options.Options`, returns a :class:`~mailroute.item.Filter` and
must call ``options.finish()``.

Layout (an empty file is a valid policy with no filters)::

    [limits]                # optional; any field of mailroute.Limits
    max_message_size = 52428800

    [parser]
    on_ambiguity = "reject" # or "record"

    [gateway]
    authserv_id = "mx.example.net"
    internal_domains = ["example.net"]
    state_dir = "/var/lib/mailroute"   # optional: the processed-message store shared by
                                       # every process (SQLite), and the quarantine
    quarantine_dir = "/var/lib/mailroute/quarantine"   # optional; default state_dir/quarantine

    [[pipeline]]
    filter = "disclaimer"   # then the filter's own options
    text = "footer.txt"
    [pipeline.when]         # optional condition
    direction = ["outbound"]
    sender_domain = ["example.net"]
    annotation = { "smime.authenticated" = "no" }   # facts left by earlier filters
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path

from mailroute.config.options import Options
from mailroute.errors import ConfigError
from mailroute.gateway.processed import InMemoryProcessedStore
from mailroute.item import Context, Direction, Filter, ProcessedStore
from mailroute.limits import Limits
from mailroute.mime.scan import AmbiguityPolicy
from mailroute.pipeline import Condition, Conditional, Pipeline

__all__ = ["FILTERS", "FilterBuilder", "build_filter", "load_policy", "policy_from_mapping"]

FilterBuilder = Callable[[Options], Filter]

_TOP_LEVEL = {"limits", "parser", "gateway", "pipeline"}


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
}


def load_policy(path: str | Path) -> Pipeline:
    """Load and validate a policy file.

    Raises:
        ConfigError: the file cannot be read, is not TOML, or holds an invalid setting; the
            message names the file, the key path and, where it can be found, the line.
    """
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read policy: {exc.__class__.__name__}",
                          source=str(source)) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", source=str(source)) from exc
    try:
        return policy_from_mapping(data, source=str(source), base_dir=source.parent)
    except ConfigError as exc:
        line = _locate(text, exc.key)
        if line is None:
            raise
        raise ConfigError(str(exc).split(": ", 2)[-1], source=f"{source}:{line}",
                          key=exc.key) from exc


def policy_from_mapping(data: Mapping[str, object], *, source: str = "<policy>",
                        base_dir: Path | None = None) -> Pipeline:
    """Build a pipeline from already-parsed policy data (see :func:`load_policy`)."""
    top = Options(data, source=source, base_dir=base_dir)
    limits = _limits(Options(top.table("limits"), source=source, prefix="limits"))
    parser = Options(top.table("parser"), source=source, prefix="parser")
    on_ambiguity = AmbiguityPolicy(parser.choice("on_ambiguity", ("reject", "record"),
                                                 "reject"))
    parser.finish()
    gateway = Options(top.table("gateway"), source=source, prefix="gateway", base_dir=base_dir)
    authserv_id = gateway.string("authserv_id", "mailroute")
    if not re.fullmatch(r"[A-Za-z0-9.-]+", authserv_id):
        raise gateway.error("authserv_id", "must be a host name")
    internal = frozenset(d.lower() for d in gateway.string_list("internal_domains"))
    processed, quarantine_dir = _state(gateway)
    gateway.finish()
    entries = top.raw("pipeline", [])
    if not isinstance(entries, list):
        raise top.error("pipeline", "must be an array of tables ([[pipeline]])")
    filters: list[Filter] = []
    for index, entry in enumerate(entries):
        prefix = f"pipeline[{index}]"
        if not isinstance(entry, Mapping):
            raise ConfigError("must be a table", source=source, key=prefix)
        options = Options({k: v for k, v in entry.items() if k != "when"}, source=source,
                          prefix=prefix, base_dir=base_dir)
        step = build_filter(options.string("filter"), options)
        options.finish()
        if "when" in entry:
            when = entry["when"]
            if not isinstance(when, Mapping):
                raise ConfigError("must be a table", source=source, key=f"{prefix}.when")
            condition = _condition(Options(when, source=source, prefix=f"{prefix}.when"))
            step = Conditional(step, condition)
        filters.append(step)
    top.finish()
    context = Context(limits=limits, processed=processed)
    return Pipeline(filters=tuple(filters), limits=limits, on_ambiguity=on_ambiguity,
                    internal_domains=internal, authserv_id=authserv_id, context=context,
                    quarantine_dir=quarantine_dir)


def build_filter(name: str, options: Options) -> Filter:
    """Build filter ``name`` from ``options``.

    Raises:
        ConfigError: unknown filter name, a missing optional dependency, or bad options.
    """
    entry = FILTERS.get(name)
    if entry is None:
        raise options.error("filter", f"unknown filter {name!r}")
    module_name, function, extra = entry
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f"; install mailroute[{extra}]" if extra else ""
        raise options.error("filter", f"filter {name!r} is not available ({exc.name}{hint})"
                            ) from exc
    builder: FilterBuilder = getattr(module, function)
    try:
        return builder(options)
    except ConfigError as exc:
        # A file an option names (a certificate, key or template) is at fault: say which
        # option, so that the policy's file and line are found as for any other error.
        option = options.key_of_file(exc.source) if exc.key is None else None
        if option is None:
            raise
        raise options.error(option, str(exc)) from exc
    except (ValueError, OSError) as exc:
        raise options.error("filter", f"cannot build filter {name!r}: {exc}") from exc


def _state(gateway: Options) -> tuple[ProcessedStore, Path | None]:
    """``state_dir`` (the SQLite processed-message store shared by every process, and the
    default quarantine) and ``quarantine_dir``; without ``state_dir`` the store lives in
    this process only."""
    state_dir = gateway.optional_path("state_dir")
    quarantine_dir = gateway.optional_path("quarantine_dir")
    if state_dir is None:
        return InMemoryProcessedStore(), quarantine_dir
    # imported here: a policy without state_dir does not load sqlite3 (start-up time)
    from mailroute.gateway.sqlite_store import PROCESSED_FILE, SqliteProcessedStore
    store = SqliteProcessedStore(state_dir / PROCESSED_FILE)
    return store, quarantine_dir or state_dir / "quarantine"


def _limits(options: Options) -> Limits:
    values = {f.name: options.integer(f.name, f.default, minimum=1)
              for f in dataclasses.fields(Limits)}
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
        authenticated=options.boolean("authenticated") if options.has("authenticated") else None,
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
    """The line of ``key`` (``pipeline[2].add.X-Foo``) in the TOML text, when it can be found.

    Looks inside the key's table (``[[pipeline]]`` number 2, or ``[limits]``) for the deepest
    key part that stands before an ``=``; the table header's line is the fallback.
    """
    if not key:
        return None
    parts = key.split(".")
    lines = text.splitlines()
    start, stop = 0, len(lines)
    table = re.fullmatch(r"(\w+)\[(\d+)\]", parts[0])
    header = f"[[{table.group(1)}]]" if table else f"[{parts[0]}]"
    wanted = int(table.group(2)) if table else 0
    headers = [n for n, line in enumerate(lines) if line.strip() == header]
    found_table = wanted < len(headers)
    if found_table:
        start = headers[wanted]
        later = [n for n, line in enumerate(lines) if n > start and line.strip() == header]
        stop = later[0] if later else len(lines)
        parts = parts[1:]
    for part in reversed(parts):
        pattern = re.compile(rf"(^|[\s{{,]){re.escape(part)}\s*=")
        for number in range(start, stop):
            if pattern.search(lines[number]):
                return number + 1
    return start + 1 if found_table else None
