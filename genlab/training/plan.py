"""What is due at a step (eval, log, sample, checkpoint) and when a run stops, agreed by all ranks."""
from __future__ import annotations

import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .. import runs
from . import distributed
from .devices import precision

TASKS = ("eval", "log", "sample", "checkpoint", "progress")   # the order they run in after a step


@dataclass(frozen=True)
class Plan:
    """The schedule of a run, from its TrainConfig; steps are counted after the update (1, 2, ...)."""
    steps: int
    log_every: int
    sample_every: int
    checkpoint_every: int
    eval_every: int = 0
    bf16: bool = False
    device: torch.device = torch.device("cpu")

    @classmethod
    def from_config(cls, tc, device: torch.device, bf16: bool) -> "Plan":
        return cls(tc.steps, tc.log_every, tc.sample_every, tc.checkpoint_every, tc.eval_every, bf16, device)

    def is_log_step(self, step: int) -> bool:
        return step % self.log_every == 0 or step == self.steps

    def is_sample_step(self, step: int) -> bool:
        """Every `sample_every` steps, and log-spaced before the first one (0, 1, 2, 4, 8, ...): early
        training changes fastest, and a new run shows a grid within seconds."""
        every = self.sample_every
        return bool(every) and (step % every == 0 or (step < every and step & (step - 1) == 0))

    def due(self, step: int) -> list[str]:
        """The tasks due once `step` steps are done, in the order they run. `progress` is asked every
        step and writes at most about once a second (see Tasks.progress)."""
        every = {"eval": self.eval_every, "checkpoint": self.checkpoint_every}
        due = {"log": self.is_log_step(step), "sample": self.is_sample_step(step), "progress": True}
        return [task for task in TASKS if (due[task] if task in due else every[task] and step % every[task] == 0)]

    def precision(self):
        """bf16 autocast or nothing; entered per step (autocast caches bf16 weight copies)."""
        return precision(self.bf16, self.device)


class StopSignals:
    """SIGINT / SIGTERM set a flag instead of killing the run (main thread only)."""

    def __init__(self):
        self.received: str | None = None
        self.previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def handle(self, signum, frame):
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class Stopper:
    """Asked before every step: a signal, the run's STOP file or `should_stop()` ends the run.

    Rank 0 reads the STOP file and the hook; all ranks agree (one small all-reduce) every step on the
    CPU and every log step on a GPU, so there is no host sync per step there.
    """

    def __init__(self, run_dir: Path | None, should_stop: Callable[[], bool] | None,
                 group: distributed.Distributed, device: torch.device, log_every: int):
        self.run_dir, self.should_stop, self.group, self.device = run_dir, should_stop, group, device
        self.every = 1 if device.type == "cpu" else log_every
        self.signals = StopSignals()
        self.reason: str | None = None

    def __enter__(self):
        self.signals.__enter__()
        return self

    def __exit__(self, *exc):
        self.signals.__exit__(*exc)

    def __call__(self, step: int) -> bool:
        if self.group.active and step % self.every:
            return False
        reason = self.signals.received
        if reason is None and self.group.is_main and self.run_dir is not None and (
                runs.stop_requested(self.run_dir) or (self.should_stop is not None and self.should_stop())):
            reason = "stop requested"
        if self.group.active and distributed.any_rank(reason is not None, self.device):
            reason = reason or "stop requested"
        self.reason = reason
        return reason is not None
