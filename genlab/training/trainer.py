"""`train` and `resume`: set a run up (data, model, devices, process group), run the loop, end it.

The loop knows nothing of any UI. It writes the run folder (see `genlab.runs`) and reports through
two hooks: `should_stop()` is asked before every step, `on_event(kind, payload)` is told of "start",
"log", "sample", "checkpoint" and "end". Quick evaluations come from an `evaluator` (model -> dict)
that the caller builds (the CLI and the runner build genlab.eval's), never imported here.
"""
from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Callable

import torch

from .. import runs
from ..config import ConfigError, TrainConfig, to_dict
from ..data import load_dataset
from . import distributed, loop
from .devices import resolve_device, use_bf16, use_channels_last
from .meter import Meter
from .plan import Plan, Stopper
from .prepare import PreparedRun, build_for_data, prepare_run
from .state import TrainState
from .tasks import Evaluator, OnEvent, Tasks

RANK_SEED_STRIDE = 7919          # rank r > 0 draws its batches from seed + 1 + r * stride
RESUME_SEED_STRIDE = 104729      # ... and, after a resume at step s, from + s * this


def train(config: dict | None, run_dir: str | Path, should_stop: Callable[[], bool] | None = None,
          on_event: OnEvent | None = None, resume: bool = False, evaluator: Evaluator | None = None) -> dict:
    """Train the model a run config describes into `run_dir`, or resume the run there; returns the final status.

    `config` is {"train": TrainConfig fields, "model": model config fields}; with resume=True it may be
    None (the run's own config.json is used) or change only RESUMABLE_CHANGES (see `prepare_run`).
    """
    group = distributed.from_environment(_device_type(config, run_dir, resume))
    try:
        prepared = prepare_run(run_dir, config, resume, writer=group.is_main)
        return _train(prepared, group, should_stop, on_event or (lambda kind, payload: None), evaluator)
    finally:
        group.close()


def resume(run_dir: str | Path, steps: int | None = None, **hooks) -> dict:
    """Continue a stopped, interrupted or finished run, optionally to a new total of steps."""
    return train({"train": {"steps": steps}} if steps is not None else None, run_dir, resume=True, **hooks)


def _device_type(config: dict | None, run_dir, resume: bool) -> str:
    """The device type the process group is for (nccl on cuda, gloo otherwise), before anything is checked."""
    name = ((config or {}).get("train") or {}).get("device")
    if name is None:
        name = ((runs.read_json(Path(run_dir) / "config.json") or {}).get("train") or {}).get("device", "auto")
    try:
        return resolve_device(name).type
    except ConfigError:
        return "cpu"                           # refused with its message by the checks that follow


def _train(prepared: PreparedRun, group: distributed.Distributed, should_stop, on_event, evaluator) -> dict:
    config, run_dir = prepared.config, prepared.run_dir
    tc = TrainConfig(**config["train"])
    device = resolve_device(tc.device)
    bf16 = use_bf16(tc.amp, device)                     # bf16 off CUDA is refused before any work
    if tc.eval_every and evaluator is None:
        raise ConfigError(f"eval_every={tc.eval_every} needs an evaluator: pass "
                          f"evaluator=genlab.eval.TrainingEvaluator(config['train']) (the CLI and the dashboard do)")
    if group.active and device.type == "cuda":
        device = torch.device("cuda", group.local_rank)
    if group.local_rank != 0:
        group.barrier()                                 # wait for local rank 0 to build any data cache
    data = load_dataset(tc)                             # a missing data set fails before any folder is made
    if group.local_rank == 0:
        group.barrier()
    if not group.is_main:                               # only rank 0 writes the run folder
        return _run(config, tc, data, device, bf16, prepared, group, None, lambda kind, payload: None, None)
    run_lock = runs.claim_run(run_dir, config)          # one writer: lock, clean .*.tmp, disk reserve
    try:
        return _run_main(config, tc, data, device, bf16, prepared, group, should_stop, on_event, evaluator)
    finally:
        run_lock.release()


def _run_main(config, tc: TrainConfig, data, device, bf16: bool, prepared: PreparedRun,
              group: distributed.Distributed, should_stop, on_event, evaluator) -> dict:
    """The writing process's run: a failure (a full disk included) ends in a 'failed' status saying why."""
    run_dir = prepared.run_dir
    step = {} if prepared.resume else {"step": 0}       # a resumed run shows its step until restored
    runs.write_status(run_dir, "starting", **step, total_steps=tc.steps, error=None, started=time.time(),
                      device=str(device), world_size=group.world_size)
    try:
        return _run(config, tc, data, device, bf16, prepared, group, should_stop, on_event, evaluator)
    except BaseException as error:
        runs.write_status(run_dir, "failed", error=runs.failure_message(error),
                          traceback=traceback.format_exc(limit=8))
        on_event("end", runs.read_status(run_dir))
        raise


def _run(config, tc: TrainConfig, data, device, bf16: bool, prepared: PreparedRun,
         group: distributed.Distributed, should_stop, on_event, evaluator) -> dict:
    """Build the model and state, restore a resumed run, run the loop, then end the run."""
    run_dir, main = prepared.run_dir, group.is_main
    data = data.to(device)
    torch.manual_seed(tc.seed)
    model = build_for_data(config, data).to(device)
    memory_format = torch.channels_last if use_channels_last(tc.channels_last, model, device) else None
    if memory_format is not None:
        model.to(memory_format=memory_format)                    # conv weights NHWC; same parameters
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True                    # fixed shapes: pick the fastest kernels
    config = dict(config, model=to_dict(model.config))           # with the shape taken from the data
    rng = torch.Generator(device).manual_seed(tc.seed + 1 + RANK_SEED_STRIDE * group.rank)
    state = TrainState(rng, model.make_optimizers())
    if prepared.resume:
        state.restore(runs.checkpoint_path(run_dir), model)
        if main:
            runs.truncate_after(run_dir, state.step)             # metrics and grids after the checkpoint go
    if group.active:
        if not main:               # its own batches, latents and dropout, also after a resume
            offset = RANK_SEED_STRIDE * group.rank + RESUME_SEED_STRIDE * state.step
            rng.manual_seed(tc.seed + 1 + offset)
            torch.manual_seed(tc.seed + offset)
        distributed.broadcast_module(model)                      # the same weights everywhere
        for optimizer in state.optimizers.values():
            distributed.average_gradients_before_step(optimizer, group.world_size)
    if tc.compile:
        for network in model.children():                         # in place: state_dict keys unchanged
            network.compile()
    if main:
        runs.atomic_write_json(run_dir / "config.json", config)

    plan = Plan.from_config(tc, device, bf16)
    meta = {"train_config": config["train"], "model_config": config["model"], "dataset": data.name,
            "num_images": len(data)}
    tasks = Tasks(run_dir, model, meta, plan, group, on_event, evaluator if main else None,
                  grid_seed=tc.seed + 2, num_images=len(data))
    batches = data.batcher(tc.batch_size, rng, memory_format)
    meter = Meter(images_per_step=tc.batch_size * group.world_size)
    state.started = time.time()
    # SIGINT / SIGTERM only set a flag from "running" until the final status is written: a Stop sends
    # both the STOP file and SIGTERM, and the file may end the loop before the signal arrives.
    with Stopper(run_dir, should_stop, group, device, tc.log_every) as stop:
        if main:
            runs.write_status(run_dir, "running", step=state.step, total_steps=tc.steps)
        on_event("start", {"step": state.step, "total_steps": tc.steps, "device": str(device),
                           "num_parameters": sum(p.numel() for p in model.parameters()),
                           "world_size": group.world_size})
        tasks.start(state)                                       # the step-0 grid of a new run
        loop.run(model, batches, state, plan, stop, tasks, meter, group)
        ended = "finished" if state.step >= tc.steps else "stopped"
        if not main:
            return {"state": ended, "step": state.step, "stop_reason": stop.reason, "rank": group.rank}
        if not runs.sample_path(run_dir, state.step).exists():
            tasks.sample(state)
        tasks.checkpoint(state)
        runs.clear_stop(run_dir)
        status = runs.write_status(run_dir, ended, step=state.step, stop_reason=stop.reason, finished=time.time())
    on_event("end", status)
    return status
