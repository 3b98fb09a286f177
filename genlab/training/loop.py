"""The training loop: steps until the plan's total or a stop, running what is due after each step.

It never names a network: the model's `training_step` does all of a step's phases (a GAN's D and G
steps, a VAE's ELBO step, a diffusion model's noise-prediction step). A manual step (the run is
paused and a person asks for one, see `Stopper.next_order`) may run only some of the model's phases;
it counts as a step, and its metrics line and sample grid are written right after it.
"""
from __future__ import annotations

from .. import runs
from ..models import StepContext
from . import distributed
from .meter import Meter
from .plan import TASKS, Plan, StepOrder, Stopper
from .state import TrainState
from .tasks import Tasks


def run(model, batches, state: TrainState, plan: Plan, stop: Stopper, tasks: Tasks, meter: Meter,
        group: distributed.Distributed) -> TrainState:
    """Train from `state.step` to `plan.steps` unless the stopper says otherwise; returns the state."""
    model.train()
    phases = tuple(getattr(model, "phases", ("step",)))
    manual_grid = None                                   # the last manual step's grid, if not a due one
    while state.step < plan.steps:
        order = stop.next_order(state.step, meter, phases)
        if order is None:
            break
        if order.manual and meter.steps:
            tasks.log(state, meter)                      # the automatic steps before it get their own line
        ctx = StepContext(state.step, state.rng, diagnostics=plan.is_log_step(state.step + 1),
                          total_steps=plan.steps, phases=order.phases)
        with plan.precision():
            logs = model.training_step(batches, state.optimizers, ctx)
        if group.active:
            distributed.broadcast_module(model, buffers_only=True)     # BatchNorm stats follow rank 0
        state.step += 1
        meter.add(logs)
        if order.manual:
            manual_grid = after_manual_step(state, plan, stop, tasks, meter, order, manual_grid)
            continue
        for task in plan.due(state.step):                              # eval, log, sample, checkpoint
            getattr(tasks, task)(state, meter)
    return state


def after_manual_step(state: TrainState, plan: Plan, stop: Stopper, tasks: Tasks, meter: Meter,
                      order: StepOrder, previous_grid):
    """Log (with "manual": the phases run) and sample after a manual step, besides what is due; only the
    newest grid of manual steps that were not due one is kept. Returns that grid's path (or None)."""
    stop.record_manual(order)
    due = plan.due(state.step)
    for task in TASKS:
        if task == "log":
            tasks.evals["manual"] = order.label                        # logged with the step's losses
            tasks.log(state, meter)
        elif task == "sample" or task in due:
            getattr(tasks, task)(state, meter)
    if previous_grid is not None:
        previous_grid.unlink(missing_ok=True)
    return None if "sample" in due else runs.sample_path(tasks.run_dir, state.step)
