"""The fixtures the command tests share with the engine tests."""

from tests.pgp.conftest import pgp_world, store

__all__ = ["pgp_world", "store"]
