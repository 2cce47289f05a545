"""The encryption policy: who gets signed, encrypted or refused, decided in one pure function.

:func:`decide_crypto` takes a message, the key directory
(:class:`~mailroute.keys.directory.KeyDirectory`) and a :class:`CryptoPolicy`, and returns a
:class:`CryptoPlan`: per recipient what to do and why, grouped into the messages that must
leave separately. The filters ``encrypt-by-policy``, ``sign-by-policy`` and ``harvest-keys``
(:mod:`mailroute.filters.crypto`) apply it; docs/encryption-policy.md explains the model.
"""

from mailroute.cryptopolicy.decide import decide_crypto
from mailroute.cryptopolicy.model import (
    CryptoPolicy,
    EncryptMode,
    Method,
    MissingKeyAction,
    Rules,
    SignMode,
    Trigger,
)
from mailroute.cryptopolicy.plan import Action, CryptoPlan, RecipientPlan

__all__ = [
    "Action",
    "CryptoPlan",
    "CryptoPolicy",
    "EncryptMode",
    "Method",
    "MissingKeyAction",
    "RecipientPlan",
    "Rules",
    "SignMode",
    "Trigger",
    "decide_crypto",
]
