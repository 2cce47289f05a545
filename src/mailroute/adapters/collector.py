"""The cyclic garbage collector in a process that handles one message and exits.

A mail server starts ``mailroute process`` or ``mailroute pipe`` once per message. Its
start-up (imports, the policy) allocates tens of thousands of objects that live until the
end, and the collector would traverse them again and again: dozens of young-generation
collections while modules load, and a full collection when the interpreter shuts down.
Measured with ``benchmarks/startup.py``, that is 4-6 ms of a 30-50 ms run.

So the console script pauses the collector for such a command (:func:`pause_for_start_up`);
the adapter resumes it once the policy is loaded and the message is about to be read
(:func:`resume_after_start_up`), with everything made so far frozen: the message's own
objects are collected as usual, so a run's memory stays bounded by what the message needs.
Before the process exits, :func:`skip_final_collection` freezes what is left, so shutdown
does not traverse it once more (nothing needs that collection: files and the database are
closed explicitly, and the system reclaims the memory).

Only the console script pauses; a library caller or a test that calls these adapters in
its own long-lived process is never affected (:func:`resume_after_start_up` does nothing
unless the collector was paused here).
"""

from __future__ import annotations

import gc

__all__ = ["pause_for_start_up", "resume_after_start_up", "skip_final_collection"]

_paused = False


def pause_for_start_up() -> None:
    """Turn the collector off for the start-up of a one-message process."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume_after_start_up() -> None:
    """Freeze the start-up's objects and turn the collector back on, if it was paused."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()


def skip_final_collection() -> None:
    """Freeze every object, so the collection at interpreter shutdown has nothing to do."""
    gc.freeze()
