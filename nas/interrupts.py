"""Ctrl-C and SIGTERM while a study runs take effect at safe points.

A KeyboardInterrupt raised wherever the main thread happens to be can land inside a storage
commit (PostgreSQL: the connection is invalidated mid-transaction, and Optuna reports a
StorageInternalError instead of the interrupt) or inside a finalizer, where Python drops it
("Exception ignored in ...") and the worker trains on. So within :func:`deferred` the signal
handlers only note the signal, and :func:`check` raises it: between batches (training and
evaluation) and between trials. A second Ctrl-C raises at once, for a worker stuck elsewhere;
a second SIGTERM does not, since it is what a parent sends to its spawned workers after the
terminal's Ctrl-C already reached them.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


class Terminated(KeyboardInterrupt):
    """SIGTERM (timeout, SLURM, systemd) handled as Ctrl-C: the running trial is failed with
    reason "interrupted" and queued again."""


def terminate(signum: int, frame: FrameType | None) -> None:
    """A SIGTERM handler that raises :class:`Terminated` where the signal arrives (outside
    :func:`deferred`)."""
    raise Terminated


_pending: type[KeyboardInterrupt] | None = None
_depth = 0


def check() -> None:
    """Raise the interrupt noted since the last check, if any."""
    global _pending
    if _pending is not None:
        interrupt, _pending = _pending, None
        raise interrupt


def _note(signum: int, frame: FrameType | None) -> None:
    global _pending
    interrupt = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
    if _pending is not None and signum == signal.SIGINT:
        _pending = None
        raise interrupt
    _pending = _pending or interrupt


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Within, SIGINT and SIGTERM are raised by :func:`check` (or at the end of the block),
    not where they arrive. A signal set to be ignored stays ignored. Nests; outside the main
    thread, where Python delivers no signals, it does nothing."""
    global _depth, _pending
    if _depth or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _note) for s in (signal.SIGINT, signal.SIGTERM)
                if signal.getsignal(s) is not signal.SIG_IGN}  # a background job's stays ignored
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        for s, handler in previous.items():
            signal.signal(s, handler)
        pending, _pending = _pending, None
    if pending is not None:  # arrived after the last check: the caller still hears of it
        raise pending
