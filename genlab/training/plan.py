"""What is due at a step (eval, log, sample, checkpoint) and when a run stops, agreed by all ranks."""
from __future__ import annotations

import signal
import threading
import time
from collections import deque
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
    early_grids: bool = True
    bf16: bool = False
    device: torch.device = torch.device("cpu")

    @classmethod
    def from_config(cls, tc, device: torch.device, bf16: bool) -> "Plan":
        return cls(tc.steps, tc.log_every, tc.sample_every, tc.checkpoint_every, tc.eval_every, tc.early_grids,
                   bf16, device)

    def is_log_step(self, step: int) -> bool:
        return step % self.log_every == 0 or step == self.steps

    def is_sample_step(self, step: int) -> bool:
        """Every `sample_every` steps, and log-spaced before the first one (0, 1, 2, 4, 8, ...): early
        training changes fastest, and a new run shows a grid within seconds."""
        every = self.sample_every
        early = self.early_grids and step < every and step & (step - 1) == 0
        return bool(every) and (step % every == 0 or early)

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


@dataclass(frozen=True)
class StepOrder:
    """What the next step runs: all of the model's phases (None) or some; `manual`: a person asked for it."""
    phases: tuple[str, ...] | None = None
    manual: bool = False

    @property
    def label(self) -> str:
        """How metrics.jsonl names a manual step: "D", "G", or "all"."""
        return "+".join(self.phases) if self.phases else "all"


FULL_STEP = StepOrder()
POLL_S = 0.1                  # a paused or slowed run looks at STOP, signals and its control file this often
HEARTBEAT_S = 10.0            # a paused run refreshes its status this often (other hosts judge it alive)


class Stopper:
    """Asked before every step: a signal, the run's STOP file or `should_stop()` ends the run; the run's
    control file (genlab.runs.read_control) pauses it, orders manual steps and slows it down.

    Rank 0 reads the STOP file and the hook; all ranks agree (one small all-reduce) every step on the
    CPU and every log step on a GPU, so there is no host sync per step there. The control file is
    looked at (one stat) every step on the CPU and every log step elsewhere; data-parallel runs are not
    controlled (the runner refuses it), so they never wait on one rank.
    """

    def __init__(self, run_dir: Path | None, should_stop: Callable[[], bool] | None,
                 group: distributed.Distributed, device: torch.device, log_every: int):
        self.run_dir, self.should_stop, self.group, self.device = run_dir, should_stop, group, device
        self.every = 1 if device.type == "cpu" else log_every
        self.signals = StopSignals()
        self.reason: str | None = None
        self.controlled = run_dir is not None and not group.active
        self.stamp: tuple | None = None              # the control file's (mtime, size, inode) last read
        self.mode, self.slow_s = "running", 0.0
        self.taken_seq = 0                           # the last step request taken from the control file
        self.queue: deque[StepOrder] = deque()       # manual steps taken, not yet run
        self.manual_steps = self.partial_steps = 0   # over the run's life (kept in status.json)

    def __enter__(self):
        self.signals.__enter__()
        if self.controlled:                          # a new process starts running, without old requests
            runs.clear_control(self.run_dir)
            status = runs.read_json(Path(self.run_dir) / "status.json", {})
            status = status if isinstance(status, dict) else {}
            self.manual_steps, self.partial_steps = (count(status.get(key)) for key in ("manual_steps",
                                                                                       "partial_steps"))
            if status.get("paused"):                 # left by a process that died while paused
                runs.write_status(self.run_dir, "running", paused=False)
        return self

    def __exit__(self, *exc):
        self.signals.__exit__(*exc)
        if self.controlled:
            runs.clear_control(self.run_dir)

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

    # ------------------------------------------------------------ step-by-step control
    def next_order(self, step: int, meter, phases: tuple[str, ...]) -> StepOrder | None:
        """What step `step + 1` runs, or None to stop; waits while the run is paused or slowed down.
        `phases` are the model's (a request for another phase is ignored; the runner refuses it)."""
        if self(step):
            return None
        if not self.controlled:
            return FULL_STEP
        if self.every == 1 or step % self.every == 0:
            self.poll(phases)
        if self.slow_s > 0 and not self.queue and self.mode == "running" and \
                not self.wait(step, meter, phases, self.slow_s):
            return None
        if self.queue:
            return self.queue.popleft()
        if self.mode == "paused":
            return self.wait_paused(step, meter, phases)
        return FULL_STEP

    def poll(self, phases: tuple[str, ...]) -> None:
        """Read the control file if it changed: mode, slow motion, and step requests not yet taken."""
        stamp = runs.control_stamp(self.run_dir)
        if stamp == self.stamp:
            return
        self.stamp = stamp
        control = runs.read_control(self.run_dir)
        self.mode, self.slow_s = control["mode"], control["slow_s"]
        taken = self.taken_seq
        for request in control["requests"]:
            if request["seq"] <= self.taken_seq:
                continue
            self.taken_seq = request["seq"]
            wanted = None if request["phases"] is None else tuple(p for p in phases if p in request["phases"])
            if wanted is not None and len(wanted) < len(request["phases"]):
                continue                                             # a phase this model does not have
            order = StepOrder(None if wanted == phases else wanted, manual=True)
            self.queue.extend([order] * request["k"])
        if self.taken_seq != taken:
            runs.write_status(self.run_dir, "running", control_seq=self.taken_seq)

    def wait(self, step: int, meter, phases: tuple[str, ...], seconds: float) -> bool:
        """Sleep up to `seconds` (slow motion), ending early for a request or a pause; False: stop."""
        deadline = time.monotonic() + seconds
        with meter.paused():                                 # images/s counts training time only
            while (left := deadline - time.monotonic()) > 0:
                time.sleep(min(POLL_S, left))
                if self(step):
                    return False
                self.poll(phases)
                if self.queue or self.mode != "running":
                    break
        return True

    def wait_paused(self, step: int, meter, phases: tuple[str, ...]) -> StepOrder | None:
        """Keep the process and its place while paused: the next manual step, FULL_STEP once continued,
        or None when stopped (STOP, a signal, the hook)."""
        runs.write_status(self.run_dir, "running", step=step, paused=True)
        beat = time.monotonic()
        order = None
        with meter.paused():
            while not self(step):
                self.poll(phases)
                if self.queue:
                    return self.queue.popleft()              # still paused: back here after the step
                if self.mode != "paused":
                    order = FULL_STEP
                    break
                if time.monotonic() - beat > HEARTBEAT_S:
                    runs.write_status(self.run_dir, "running", paused=True)
                    beat = time.monotonic()
                time.sleep(POLL_S)
        runs.write_status(self.run_dir, "running", paused=False)
        return order

    def record_manual(self, order: StepOrder) -> None:
        """Count a manual step in status.json; a partial one means the run is no longer what its config
        alone would train (resume equivalence holds only for runs without them)."""
        self.manual_steps += 1
        self.partial_steps += order.phases is not None
        runs.write_status(self.run_dir, "running", manual_steps=self.manual_steps, partial_steps=self.partial_steps)


def count(value) -> int:
    """A count read back from status.json (anything else is 0)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
