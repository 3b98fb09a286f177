"""What a run must carry over a restart: step, elapsed time, random generators, optimizer state.

Everything lives in the run's one checkpoint (genlab.checkpoint): the model weights, each optimizer's
state, and the RNG states (the global torch generator, CUDA's, and the loop's own `rng`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..checkpoint import CheckpointError, load_optimizer_state, model_from_checkpoint, read_checkpoint, save_checkpoint


@dataclass
class TrainState:
    """The training state of one run; `step` counts optimizer steps done."""
    rng: torch.Generator                                   # the loop's generator: batches, latents, noise
    optimizers: dict[str, torch.optim.Optimizer]
    step: int = 0
    elapsed_before: float = 0.0                            # training seconds of earlier processes
    started: float = field(default_factory=time.time)      # when this process began training

    @property
    def elapsed(self) -> float:
        return self.elapsed_before + time.time() - self.started

    def rng_tensors(self, device: torch.device) -> dict:
        state = {"torch": torch.get_rng_state(), "loop": self.rng.get_state()}
        if device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(device)
        return state

    def save(self, path: Path, model, meta: dict) -> None:
        """One atomic checkpoint: weights, optimizer and RNG state, `meta` plus step and elapsed time."""
        save_checkpoint(path, model, dict(meta, step=self.step, elapsed=self.elapsed), self.optimizers,
                        self.rng_tensors(model.device))

    def restore(self, path: Path, model) -> None:
        """Load weights, optimizer and RNG state and the step from a checkpoint (a missing one: step 0)."""
        if not Path(path).exists():
            return
        header, tensors = read_checkpoint(path)
        step, elapsed = header.get("step"), header.get("elapsed", 0.0)
        if not isinstance(step, int) or isinstance(step, bool) or step < 0 or \
                not isinstance(elapsed, (int, float)) or not elapsed >= 0:
            raise CheckpointError(f"{path}: cannot resume from it: step {step!r} / elapsed {elapsed!r} "
                                  f"is not a count of steps / seconds done")
        try:
            model.load_state_dict(model_from_checkpoint(header, tensors, path).state_dict())
            load_optimizer_state(self.optimizers, header, tensors)
            torch.set_rng_state(tensors["rng.torch"])
            self.rng.set_state(tensors["rng.loop"])
            if model.device.type == "cuda" and "rng.cuda" in tensors:
                torch.cuda.set_rng_state(tensors["rng.cuda"], model.device)
        except (KeyError, ValueError, TypeError, RuntimeError) as error:
            if isinstance(error, CheckpointError):
                raise
            raise CheckpointError(f"{path}: cannot resume from it (not a training checkpoint of this run?): "
                                  f"{type(error).__name__}: {error}") from None
        self.step, self.elapsed_before = step, float(elapsed)
        self.started = time.time()
