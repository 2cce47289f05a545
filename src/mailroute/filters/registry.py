"""Filter names (as written in a policy's ``filter = "..."``) and where their builders live.

Builders are imported only when a policy uses them, so that an optional part's dependencies
(beautifulsoup4 for disclaimers, python-gnupg for PGP) are needed only by those who use it.
A builder takes :class:`~mailroute.config.options.Options` and returns a
:class:`~mailroute.pipeline.Filter`; it must call ``options.finish()``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from mailroute.config.options import Options
from mailroute.errors import ConfigError
from mailroute.pipeline import Filter

__all__ = ["FILTERS", "FilterBuilder", "build_filter"]

FilterBuilder = Callable[[Options], Filter]

# name -> (module, builder function, extra that provides its dependencies)
FILTERS: dict[str, tuple[str, str, str | None]] = {
    "headers": ("mailroute.filters.headers", "build", None),
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
    except ConfigError:
        raise
    except (ValueError, OSError) as exc:
        raise options.error("filter", f"cannot build filter {name!r}: {exc}") from exc
