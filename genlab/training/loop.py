"""The training loop: steps until the plan's total or a stop, running what is due after each step.

It never names a network: the model's `training_step` does all of a step's phases (a GAN's D and G
steps, a VAE's ELBO step, a diffusion model's noise-prediction step).
"""
from __future__ import annotations

from ..models import StepContext
from . import distributed
from .meter import Meter
from .plan import Plan, Stopper
from .state import TrainState
from .tasks import Tasks


def run(model, batches, state: TrainState, plan: Plan, stop: Stopper, tasks: Tasks, meter: Meter,
        group: distributed.Distributed) -> TrainState:
    """Train from `state.step` to `plan.steps` unless `stop(step)` says otherwise; returns the state."""
    model.train()
    while state.step < plan.steps and not stop(state.step):
        ctx = StepContext(state.step, state.rng, diagnostics=plan.is_log_step(state.step + 1),
                          total_steps=plan.steps)
        with plan.precision():
            logs = model.training_step(batches, state.optimizers, ctx)
        if group.active:
            distributed.broadcast_module(model, buffers_only=True)     # BatchNorm stats follow rank 0
        state.step += 1
        meter.add(logs)
        for task in plan.due(state.step):                              # eval, log, sample, checkpoint
            getattr(tasks, task)(state, meter)
    return state
