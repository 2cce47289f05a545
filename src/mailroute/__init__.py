"""mailroute: composable mail-processing filters for people who build their own gateways.

The public surface is what this module exports (``__all__``, pinned by a test) plus the
documented modules ``mailroute.mime``, ``mailroute.policy``, ``mailroute.session``,
``mailroute.testing`` and ``mailroute.routing``.
"""

__version__ = "0.2.0"

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
