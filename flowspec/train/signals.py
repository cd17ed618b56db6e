"""Stopping a run cleanly: SIGINT (Ctrl-C) and SIGTERM (what a cluster scheduler sends on
preemption) ask the loop to write a checkpoint at the next step boundary and stop; the CLI then exits
with the conventional ``128 + signal`` (130 for SIGINT, 143 for SIGTERM).

A second signal of the same kind acts as it would without flowspec (SIGINT raises
``KeyboardInterrupt``, SIGTERM ends the process), for a user who will not wait for the step.

A signal that the process inherited as ignored (``nohup``, ``cmd &`` in a non-interactive shell, CI
runners) stays ignored, as Python itself leaves an inherited ``SIG_IGN`` for SIGINT alone.
"""

from __future__ import annotations

import signal
import threading

from flowspec.errors import FlowSpecError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(FlowSpecError):
    """The run stopped on a signal after writing its checkpoint; ``exit_code`` is ``128 + signal``."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class StopRequests:
    """``with StopRequests() as stop:`` records SIGINT / SIGTERM in ``stop.signum`` instead of acting
    on them (main thread only; elsewhere signals keep their handlers and ``signum`` stays ``None``;
    an ignored signal stays ignored)."""

    def __init__(self):
        self.signum: int | None = None
        self.previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        self.signum = self.signum or signum
        signal.signal(signum, self.previous[signum] or signal.SIG_DFL)  # a second one acts as before

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                if signal.getsignal(signum) is signal.SIG_IGN:
                    continue
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler or signal.SIG_DFL)
        self.previous.clear()

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""
