"""Dry runs: what a policy would do to a message, without doing it (``mailroute try``).

:func:`dry_run` runs the pipeline with the policy's processed-message store read only, so
trying a message sees the loops a real pass would see but never records it as processed (a
later real pass is not taken for a loop), and
reports the verdict, the reply, each filter's result and the changes as a unified diff of
the message text (:func:`message_diff`).
"""

from __future__ import annotations

import difflib

from mailroute.gateway.processed import ReadOnlyProcessedStore
from mailroute.item import Context, Envelope
from mailroute.pipeline import Pipeline
from mailroute.records import record, replace
from mailroute.results import Action
from mailroute.session import Result

__all__ = ["DryRun", "dry_run", "message_diff"]


def message_diff(before: bytes, after: bytes, *, context: int = 1) -> list[str]:
    """A unified diff of two messages as text lines, without the file header lines;
    empty when they are equal. Bytes that are not UTF-8 show as U+FFFD."""
    lines = list(difflib.unified_diff(
        before.decode("utf-8", "replace").splitlines(),
        after.decode("utf-8", "replace").splitlines(), "in", "out", lineterm="", n=context))
    return lines[2:]


@record(frozen=True)
class DryRun:
    """What the policy would do.

    Attributes:
        result: the session's result (verdict, reply, output, trace).
        diff: the changes to the message (empty unless accepted and changed).
    """

    result: Result
    diff: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        """``{"action", "reply", "filters": [{"name", "result"}], "changed", "diff"}``."""
        return {"action": str(self.result.action), "reply": self.result.reply,
                "filters": [{"name": n, "result": r} for n, r in self.result.trace],
                "changed": bool(self.diff), "diff": list(self.diff)}


def dry_run(pipeline: Pipeline, data: bytes, envelope: Envelope | None = None, *,
            context: Context | None = None, diff_context: int = 1) -> DryRun:
    """Run ``pipeline`` over ``data`` without side effects on the processed-message store
    (which it reads: a message a real pass would refuse as a loop is refused here too).

    Never raises (as :meth:`Pipeline.process`).
    """
    base = context or pipeline.context or Context(limits=pipeline.limits)
    seen = base.processed or (pipeline.context.processed if pipeline.context else None)
    ctx = replace(base, processed=ReadOnlyProcessedStore(seen))
    result = pipeline.process(data, envelope, context=ctx)
    diff: list[str] = []
    if result.action is Action.ACCEPT and result.data is not None:
        diff = message_diff(data, result.data, context=diff_context)
    return DryRun(result, tuple(diff))
