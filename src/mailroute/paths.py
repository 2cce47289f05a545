"""Directories for state and secrets, created private all the way down."""

from __future__ import annotations

from pathlib import Path

__all__ = ["private_directory"]


def private_directory(path: Path) -> None:
    """Make ``path`` and every missing directory above it with mode 0700 (the umask may
    take more away, never add). ``Path.mkdir(mode, parents=True)`` gives the parents the
    umask's mode instead (0755 as a rule), so a state directory created on first use was
    world-readable.

    Raises:
        OSError: a directory could not be made.
    """
    missing: list[Path] = []
    current = path
    while not current.is_dir() and current.parent != current:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
