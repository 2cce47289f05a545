"""What :func:`~mailroute.cryptopolicy.decide_crypto` returns: a plan per recipient, grouped."""

from __future__ import annotations

import enum

from mailroute.cryptopolicy.model import Method
from mailroute.records import record

__all__ = ["Action", "CryptoPlan", "Group", "RecipientPlan"]


class Action(enum.StrEnum):
    """What happens to the copy for one recipient."""

    PLAIN = "plain"        # delivered without gateway encryption (maybe signed)
    ENCRYPT = "encrypt"
    PASS = "pass"  # noqa: S105 - an action; not the gateway's business: inbound, internal, already encrypted
    REJECT = "reject"      # mandatory encryption, no usable key: refuse (5xx)
    HOLD = "hold"          # mandatory encryption, no usable key: quarantine until one comes
    NOTIFY = "notify"      # as hold, and the sender is told


@record(frozen=True)
class RecipientPlan:
    """One recipient's plan.

    Attributes:
        recipient: the envelope recipient.
        action: what happens.
        sign: sign the copy (with the sender's key).
        method: S/MIME or PGP for ``encrypt`` (and the kind of signature), else ``None``.
        cipher: the S/MIME content cipher for ``encrypt``.
        keys: fingerprints of the recipient's keys to encrypt to.
        reasons: why, in words, in the order they were decided.
        mandatory: encryption is required (the copy must never go in clear).
    """

    recipient: str
    action: Action
    sign: bool = False
    method: Method | None = None
    cipher: str = ""
    keys: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    mandatory: bool = False

    @property
    def treatment(self) -> tuple[Action, bool, Method | None, str]:
        """What must be the same for two recipients to share one copy of the message."""
        return self.action, self.sign, self.method, self.cipher


@record(frozen=True)
class Group:
    """Recipients that share one copy of the message, and what that copy gets."""

    recipients: tuple[str, ...]
    action: Action
    sign: bool
    method: Method | None
    cipher: str
    keys: tuple[str, ...]


@record(frozen=True)
class CryptoPlan:
    """The plan for one message.

    Attributes:
        recipients: one plan per envelope recipient, in envelope order.
        triggered: an authenticated internal sender asked for encryption.
        remove_subject_tag: the trigger tag to take out of the Subject (``""``: none).
        remove_header: the trigger header field to remove (``""``: none).
        notes: message-level reasons (a trigger ignored, the message already encrypted).
    """

    recipients: tuple[RecipientPlan, ...]
    triggered: bool = False
    remove_subject_tag: str = ""
    remove_header: str = ""
    notes: tuple[str, ...] = ()

    @property
    def groups(self) -> tuple[Group, ...]:
        """The copies to send: recipients with the same treatment share one, in order of
        first appearance. More than one group means the message must be split."""
        order: dict[tuple[object, ...], list[RecipientPlan]] = {}
        for plan in self.recipients:
            order.setdefault(plan.treatment, []).append(plan)
        return tuple(Group(tuple(p.recipient for p in plans), plans[0].action, plans[0].sign,
                           plans[0].method, plans[0].cipher,
                           tuple(k for p in plans for k in p.keys))
                     for plans in order.values())

    @property
    def split(self) -> bool:
        """True when the recipients need different copies."""
        return len(self.groups) > 1

    def refused(self) -> tuple[RecipientPlan, ...]:
        """The recipients whose copy cannot go: reject, hold or notify."""
        return tuple(p for p in self.recipients
                     if p.action in (Action.REJECT, Action.HOLD, Action.NOTIFY))
