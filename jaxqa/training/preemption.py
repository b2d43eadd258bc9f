"""SIGTERM/SIGINT during training: finish the step in flight, save a checkpoint, exit resumably."""

from __future__ import annotations

import logging
import signal
import threading

import jax

log = logging.getLogger("jaxqa")


class StopRequest:
    """SIGTERM/SIGINT ask the loop to stop after the step in flight, save a checkpoint and exit; a second
    signal acts at once, as usual.

    One process: a handler sets a flag. Several: the save is collective, so every process must stop at
    the same step. SIGTERM is left to JAX's preemption service (installed by `jax.distributed`), which
    tells every process and agrees on the step (`reached_preemption_sync_point`, called at every step);
    a SIGINT is passed on to it as a SIGTERM."""

    def __enter__(self):
        self.signal, self.previous = None, {}
        self.multihost = jax.process_count() > 1
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT,) if self.multihost else (signal.SIGTERM, signal.SIGINT):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame):
        self.signal = signal.Signals(signum).name
        signal.signal(signum, self.previous[signum])
        log.warning("%s received: finishing the current step and saving a checkpoint", self.signal)
        if self.multihost:
            signal.raise_signal(signal.SIGTERM)  # to JAX's preemption notifier, which tells every process

    def requested(self, step: int) -> bool:
        """Whether to stop after `step`; asked at every step (on several hosts, a collective agreement)."""
        if self.multihost:
            from jax.experimental import multihost_utils

            with jax.transfer_guard("allow"):
                return multihost_utils.reached_preemption_sync_point(step)
        return self.signal is not None

    def cuts_short(self) -> bool:
        """Whether work a resumed run redoes (an evaluation in the loop) may be given up now: a signal came to
        this process, the only one (on several, an evaluation is collective: all finish it, then stop)."""
        return not self.multihost and self.signal is not None

    def __exit__(self, *_exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
