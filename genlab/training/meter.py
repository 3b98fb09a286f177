"""Averaged metrics over a log interval, and images per second of training time."""
from __future__ import annotations

import contextlib
import math
import time
from typing import Callable

import torch


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite."""


class Meter:
    """Sums the scalars a training step returns (on the device, no host sync) until `flush()`.

    A key is averaged over the steps that returned it, so a value measured only at log steps
    (e.g. R1's gradient norm) is not divided by the interval.
    """

    def __init__(self, images_per_step: int):
        self.images_per_step = images_per_step
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.steps = 0
        self.started = time.time()

    def add(self, logs: dict[str, torch.Tensor]) -> None:
        for key, value in logs.items():
            self.sums[key] = self.sums[key] + value if key in self.sums else value.float().clone()
            self.counts[key] = self.counts.get(key, 0) + 1
        self.steps += 1

    @contextlib.contextmanager
    def paused(self):
        """Time spent inside (an evaluation) does not count against images/s."""
        start = time.time()
        try:
            yield
        finally:
            self.started += time.time() - start

    def flush(self, step: int, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict:
        """The interval's averages and images/s (one host sync); refuses NaN or inf; starts a new interval."""
        keys = list(self.sums)
        values = torch.stack([self.sums[key] for key in keys]) if keys else torch.zeros(0)
        if reduce is not None and keys:
            values = reduce(values)                                      # e.g. the mean over all ranks
        record = {key: value / self.counts[key] for key, value in zip(keys, values.tolist())}
        bad = [key for key, value in record.items() if not math.isfinite(value)]
        if bad:
            raise TrainingDiverged(f"{', '.join(bad)} became {record[bad[0]]} by step {step}; "
                                   f"training diverged (try a lower learning rate or enable R1)")
        record["images_per_s"] = self.steps * self.images_per_step / max(time.time() - self.started, 1e-9)
        self.reset()
        return record
