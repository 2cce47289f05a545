"""The fixtures the command tests share with the engine tests."""

from tests.pgp.conftest import pgp_world, store
from tests.smime.conftest import pki

__all__ = ["pgp_world", "pki", "store"]
