"""The fixtures the filter tests share with the engine tests they sit beside."""

from tests.marker.conftest import corpus
from tests.pgp.conftest import pgp_world, store
from tests.smime.conftest import pki

__all__ = ["corpus", "pgp_world", "pki", "store"]
