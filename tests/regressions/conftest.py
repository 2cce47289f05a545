"""The S/MIME test PKI, for the regression tests that need keys."""

from tests.smime.conftest import pki

__all__ = ["pki"]
