"""Typed, checked access to one table of options (a ``[[pipeline]]`` entry or CLI flags).

Every getter records the key it read; :meth:`Options.finish` then rejects any key nobody
asked for, so a misspelt option is an error that names the file and the key path, never a
silently ignored setting.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, TypeVar

from mailroute.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["Options"]

_MISSING = object()
_PathT = TypeVar("_PathT", str, "Path")


class Options:
    """Options of one filter, with the file and key path errors should name.

    Args:
        values: the option table.
        source: the policy file (or ``"command line"``).
        prefix: the key path of the table, e.g. ``pipeline[2]``.
        base_dir: relative paths are resolved against it (the policy file's folder).
        inherited: values a key takes when this table does not set it (policy-wide
            settings such as ``[gateway] authserv_id``); never reported as unknown.
    """

    def __init__(self, values: Mapping[str, object], *, source: str, prefix: str = "",
                 base_dir: str | os.PathLike[str] | None = None,
                 inherited: Mapping[str, object] | None = None) -> None:
        self._values = dict(values)
        self._inherited = dict(inherited or {})
        self._seen: set[str] = set()
        self._path_keys: dict[str, str] = {}
        self.source = source
        self.prefix = prefix
        self._base_dir = base_dir

    @property
    def base_dir(self) -> Path:
        """The folder relative paths are resolved against (default: the working directory)."""
        # pathlib (with urllib.parse) is loaded by the first policy that names a file: an
        # empty policy is spared its import
        from pathlib import Path

        return Path.cwd() if self._base_dir is None else Path(self._base_dir)

    def key_path(self, name: str) -> str:
        """``prefix.name``."""
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, message: str) -> ConfigError:
        """A :class:`ConfigError` about option ``name``."""
        return ConfigError(message, source=self.source, key=self.key_path(name))

    def _get(self, name: str, default: object) -> object:
        self._seen.add(name)
        value = self._values.get(name, self._inherited.get(name, default))
        if value is _MISSING:
            raise self.error(name, "is required")
        return value

    def raw(self, name: str, default: object = _MISSING) -> object:
        """An option of any type (the caller checks it)."""
        return self._get(name, default)

    def inherited(self, name: str) -> object | None:
        """The policy-wide value of ``name`` this table inherits, if any."""
        return self._inherited.get(name)

    def has(self, name: str) -> bool:
        """True when the option was given."""
        return name in self._values

    def string(self, name: str, default: str | object = _MISSING) -> str:
        """A string option."""
        value = self._get(name, default)
        if not isinstance(value, str):
            raise self.error(name, "must be a string")
        return value

    def optional_string(self, name: str) -> str | None:
        """A string option that may be absent."""
        self._seen.add(name)
        return self.string(name) if self.has(name) else None

    def integer(self, name: str, default: int | object = _MISSING, *, minimum: int = 0) -> int:
        """An integer option of at least ``minimum``."""
        value = self._get(name, default)
        if isinstance(value, str) and value.lstrip("-").isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise self.error(name, f"must be an integer of at least {minimum}")
        return value

    def boolean(self, name: str, default: bool | object = _MISSING) -> bool:
        """A boolean option."""
        value = self._get(name, default)
        if not isinstance(value, bool):
            raise self.error(name, "must be true or false")
        return value

    def optional_boolean(self, name: str) -> bool | None:
        """A boolean option, or ``None`` when it is not set."""
        self._seen.add(name)
        return self.boolean(name) if self.has(name) else None

    def choice(self, name: str, choices: tuple[str, ...], default: str | object = _MISSING) -> str:
        """A string option restricted to ``choices``."""
        value = self.string(name, default)
        if value not in choices:
            raise self.error(name, f"must be one of {', '.join(choices)}")
        return value

    def string_list(self, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        """A list of strings; a single string counts as a list of one."""
        value = self._get(name, list(default))
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise self.error(name, "must be a list of strings")
        return tuple(value)

    def path(self, name: str, default: Path | None = None) -> Path:
        """A path, resolved against ``base_dir`` when relative (required unless there is a
        ``default``)."""
        if default is not None and not self.has(name):
            self._seen.add(name)
            return default
        return self._remember(name, self.base_dir / self.string(name))

    def optional_path(self, name: str) -> Path | None:
        """A path that may be absent."""
        self._seen.add(name)
        return self.path(name) if self.has(name) else None

    def file(self, name: str) -> str:
        """A file name as a string, resolved against ``base_dir`` when relative: what
        :meth:`path` names, for a caller that opens it with :func:`open` or :mod:`os` (the
        built-in filters do, which spares a run the import of :mod:`pathlib`)."""
        value = self.string(name)
        if os.path.isabs(value):
            return self._remember(name, value)
        base = os.getcwd() if self._base_dir is None else os.fspath(self._base_dir)
        return self._remember(name, value if base == os.curdir else os.path.join(base, value))

    def optional_file(self, name: str) -> str | None:
        """A file name that may be absent (see :meth:`file`)."""
        self._seen.add(name)
        return self.file(name) if self.has(name) else None

    def path_list(self, name: str) -> tuple[Path, ...]:
        """A list of paths, each resolved against ``base_dir``."""
        return tuple(self._remember(name, self.base_dir / p) for p in self.string_list(name))

    def _remember(self, name: str, path: _PathT) -> _PathT:
        self._path_keys[str(path)] = name
        return path

    def key_of_file(self, file: str | None) -> str | None:
        """The option that named ``file`` (as an error's ``source`` gives it), if one did."""
        return self._path_keys.get(file) if file else None

    def table(self, name: str) -> Mapping[str, object]:
        """A nested table (empty when absent)."""
        value = self._get(name, {})
        if not isinstance(value, Mapping):
            raise self.error(name, "must be a table")
        return value

    def finish(self) -> None:
        """Reject every option that no getter asked for."""
        unknown = sorted(set(self._values) - self._seen)
        if unknown:
            raise self.error(unknown[0], "unknown option")
