"""What a run writes when a task is due: eval, log, sample and checkpoint lines, grids and files.

Only rank 0 writes the run folder; every rank takes part in the collectives (the metrics' mean).
"""
from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Callable

import torch

from .. import runs
from ..models import HasSamplingKnobs, HasTrajectory
from . import distributed
from .meter import Meter
from .plan import Plan
from .state import TrainState

Evaluator = Callable[[torch.nn.Module], dict]          # model -> {"eval/name": number}
OnEvent = Callable[[str, dict], None]
PROGRESS_EVERY_S = 1.0                                 # the step in status.json between log steps, at most this often
STRIP_STEPS = 10                                       # sampling steps of the live denoising strip (few: cheap)


def save_grid(model, rng: torch.Generator, path: Path) -> None:
    """A PNG of `model.sample_grid(rng)` in eval mode without gradients, written atomically."""
    from torchvision.utils import save_image
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            images, nrow = model.sample_grid(rng)                      # (n, C, H, W) in [-1, 1]
    finally:
        model.train(was_training)
    buffer = io.BytesIO()
    save_image(images.float().cpu(), buffer, format="png", nrow=nrow, normalize=True, value_range=(-1, 1),
               padding=2)
    runs.atomic_write_bytes(path, buffer.getvalue())


def save_strip(model, rng: torch.Generator, path: Path) -> None:
    """A PNG of a HasTrajectory model's `denoising_strip(rng)` (x_t above x0_hat per seed, noise to image) at
    STRIP_STEPS sampling steps (fewer if its steps knob says so), in eval mode, written atomically."""
    from torchvision.utils import save_image
    knobs = model.sampling_knobs() if isinstance(model, HasSamplingKnobs) else {}
    steps = {"steps": min(STRIP_STEPS, knobs["steps"]["default"])} if "steps" in knobs else {}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            strip = model.denoising_strip(rng, **steps)                # (C, H', W') in [-1, 1]
    finally:
        model.train(was_training)
    buffer = io.BytesIO()
    save_image(strip.float().cpu(), buffer, format="png", normalize=True, value_range=(-1, 1))
    runs.atomic_write_bytes(path, buffer.getvalue())


class Tasks:
    """The due tasks of one run: `eval`, `log`, `sample`, `checkpoint`, `progress`, each called as
    task(state, meter); `start(state)` before the first step."""

    def __init__(self, run_dir: Path, model, meta: dict, plan: Plan, group: distributed.Distributed,
                 on_event: OnEvent, evaluator: Evaluator | None, grid_seed: int, num_images: int):
        self.run_dir, self.model, self.meta, self.plan, self.group = Path(run_dir), model, meta, plan, group
        self.on_event, self.evaluator = on_event, evaluator
        self.grid_seed, self.num_images = grid_seed, num_images
        self.evals: dict = {}                               # measured at this step, logged with it
        self.status_written = time.monotonic()              # when status.json last got the step

    def start(self, state: TrainState) -> None:
        """Before the first step of a new run: the grid at step 0 (what the untrained model draws)."""
        if state.step == 0 and self.plan.is_sample_step(0):
            self.sample(state)

    def eval(self, state: TrainState, meter: Meter) -> None:
        if self.evaluator is None or not self.group.is_main:
            return
        with meter.paused():                                # images/s counts training time only
            self.evals = self.evaluator(self.model)
        if not self.plan.is_log_step(state.step):          # otherwise logged with the step's losses
            runs.append_metrics(self.run_dir, dict(self.evals, step=state.step, time=state.elapsed))
            self.evals = {}

    def log(self, state: TrainState, meter: Meter) -> None:
        record = meter.flush(state.step, distributed.all_ranks_mean if self.group.active else None)
        record.update(self.evals, step=state.step, epoch=state.step * meter.images_per_step / self.num_images,
                      time=state.elapsed)
        record["images_per_s"] = record.pop("images_per_s")           # last, as before
        self.evals = {}
        if self.group.is_main:
            runs.append_metrics(self.run_dir, record)
            runs.write_status(self.run_dir, "running", step=state.step, images_per_s=record["images_per_s"],
                              last=record)
            self.status_written = time.monotonic()
        self.on_event("log", record)

    def sample(self, state: TrainState, meter: Meter | None = None) -> None:
        if not self.group.is_main:
            return
        path = runs.sample_path(self.run_dir, state.step)
        save_grid(self.model, torch.Generator(self.model.device).manual_seed(self.grid_seed), path)
        if isinstance(self.model, HasTrajectory):            # its own generator: the training stream is untouched
            save_strip(self.model, torch.Generator(self.model.device).manual_seed(self.grid_seed),
                       runs.strip_path(self.run_dir, state.step))
        self.on_event("sample", {"step": state.step, "path": str(path)})

    def progress(self, state: TrainState, meter: Meter | None = None) -> None:
        """The step count in status.json between log steps (a live page's counter), at most once per
        PROGRESS_EVERY_S: one clock read per step otherwise."""
        now = time.monotonic()
        if not self.group.is_main or now - self.status_written < PROGRESS_EVERY_S:
            return
        self.status_written = now
        runs.write_status(self.run_dir, "running", step=state.step)

    def checkpoint(self, state: TrainState, meter: Meter | None = None) -> None:
        if not self.group.is_main:
            return
        path = runs.checkpoint_path(self.run_dir)
        state.save(path, self.model, self.meta)
        self.on_event("checkpoint", {"step": state.step, "path": str(path)})
