"""mailroute: composable mail-processing filters for people who build their own gateways.

The public surface is what this module exports (``__all__``, pinned by a test) plus the
documented modules ``mailroute.mime``, ``mailroute.policy``, ``mailroute.session``,
``mailroute.testing`` and ``mailroute.routing``.

The names are loaded on first use (PEP 562): a mail server starts ``mailroute`` once per
message, and ``import mailroute.errors`` must not cost the whole public API.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.2.0"

if TYPE_CHECKING:
    from mailroute.errors import (
        AmbiguousMessageError as AmbiguousMessageError,
    )
    from mailroute.errors import (
        ConfigError as ConfigError,
    )
    from mailroute.errors import (
        LimitExceededError as LimitExceededError,
    )
    from mailroute.errors import (
        MailrouteError as MailrouteError,
    )
    from mailroute.errors import (
        MalformedMessageError as MalformedMessageError,
    )
    from mailroute.item import Context as Context
    from mailroute.item import Direction as Direction
    from mailroute.item import Envelope as Envelope
    from mailroute.item import Filter as Filter
    from mailroute.item import MailItem as MailItem
    from mailroute.limits import Limits as Limits
    from mailroute.mime import Message as Message
    from mailroute.mime import parse as parse
    from mailroute.pipeline import Condition as Condition
    from mailroute.pipeline import Pipeline as Pipeline
    from mailroute.policy import load_policy as load_policy
    from mailroute.results import Action as Action
    from mailroute.results import AuthResult as AuthResult
    from mailroute.results import AuthStatus as AuthStatus
    from mailroute.results import Outcome as Outcome
    from mailroute.results import Reply as Reply
    from mailroute.session import Result as Result

#: public name -> the module that defines it (the imports above, for the type checker).
_HOME = {
    "AmbiguousMessageError": "mailroute.errors",
    "ConfigError": "mailroute.errors",
    "LimitExceededError": "mailroute.errors",
    "MailrouteError": "mailroute.errors",
    "MalformedMessageError": "mailroute.errors",
    "Context": "mailroute.item",
    "Direction": "mailroute.item",
    "Envelope": "mailroute.item",
    "Filter": "mailroute.item",
    "MailItem": "mailroute.item",
    "Limits": "mailroute.limits",
    "Message": "mailroute.mime",
    "parse": "mailroute.mime",
    "Condition": "mailroute.pipeline",
    "Pipeline": "mailroute.pipeline",
    "load_policy": "mailroute.policy",
    "Action": "mailroute.results",
    "AuthResult": "mailroute.results",
    "AuthStatus": "mailroute.results",
    "Outcome": "mailroute.results",
    "Reply": "mailroute.results",
    "Result": "mailroute.session",
}

__all__ = [
    "Action",
    "AmbiguousMessageError",
    "AuthResult",
    "AuthStatus",
    "Condition",
    "ConfigError",
    "Context",
    "Direction",
    "Envelope",
    "Filter",
    "LimitExceededError",
    "MailItem",
    "MailrouteError",
    "MalformedMessageError",
    "Message",
    "Outcome",
    "Pipeline",
    "Reply",
    "Result",
    "__version__",
    "load_policy",
    "parse",
]


def __getattr__(name: str) -> object:
    """Load a public name from its module on first use, then keep it here."""
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'mailroute' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
