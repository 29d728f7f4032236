"""Stop promptly on SIGTERM (what SLURM and job managers send) and SIGINT (Ctrl-C), keeping what is finished.

:func:`exit_on_signals` (entered by :func:`advcam_pl.pipeline.run_pipeline`) turns either signal into
:class:`Interrupted`, a ``SystemExit`` with status 128 + signal number, raised where the main thread
is: per-image stages keep every file already renamed into place (writes are atomic) and resume
from there. A Lightning fit with a :class:`~advcam_pl.training.callbacks.ProgressCheckpoint` asks
for the signal to be *deferred* (:func:`defer`): the fit stops at the end of the current batch,
after saving its resumable checkpoint. A second signal stops at once.

Lightning composes its own SIGTERM handler with ours (it calls the handler installed before it), so
``trainer.predict`` and ``trainer.fit`` stop too; without ours, Lightning's predict loop would ignore
SIGTERM until the end.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(SystemExit):
    """A stage stopped by a signal; ``code`` (the exit status) is 128 + ``signum``."""

    def __init__(self, signum: int):
        super().__init__(128 + int(signum))
        self.signum = int(signum)

    def __str__(self) -> str:
        return f"stopped by {signal.Signals(self.signum).name}"


class _State:
    owner_pid: int | None = None  # the process that installed the handlers (forked workers inherit them)
    deferring: int = 0
    pending: int | None = None


def _handler(signum: int, frame) -> None:
    if os.getpid() != _State.owner_pid:  # a forked worker: die the default way, quietly
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    if _State.deferring and _State.pending is None:
        _State.pending = signum
        log.warning("received %s: stopping after the current training step, once its progress checkpoint "
                    "is saved (send it again to stop at once)", signal.Signals(signum).name)
        return
    raise Interrupted(signum)


@contextmanager
def exit_on_signals(signals: Sequence[int] = SIGNALS) -> Iterator[None]:
    """Within the block, ``signals`` raise :class:`Interrupted` (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread() or _State.owner_pid == os.getpid():
        yield  # not allowed off the main thread; already installed by an outer block
        return
    previous = {s: signal.getsignal(s) for s in signals}
    _State.owner_pid, _State.deferring, _State.pending = os.getpid(), 0, None
    for s in signals:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _State.owner_pid, _State.deferring, _State.pending = None, 0, None


def defer() -> None:
    """From now until :func:`undefer`, a first signal only sets :func:`pending`; the code must call
    :func:`raise_if_pending` at safe points (a fit: after each batch)."""
    _State.deferring += 1


def undefer() -> None:
    _State.deferring = max(0, _State.deferring - 1)


def pending() -> int | None:
    """The signal received while deferred, if any."""
    return _State.pending


def raise_if_pending() -> None:
    if _State.pending is not None:
        raise Interrupted(_State.pending)
