"""The training loop: one function, `train`, used by the CLI, the dashboard and the tests.

It knows nothing of any UI. It writes the run folder (see `genlab.runs`) and reports through two
hooks: `should_stop()` is asked before every step, `on_event(kind, payload)` is told of
"start", "log", "sample", "checkpoint" and "end".
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import signal
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

import torch

from . import distributed, runs
from .checkpoint import (CheckpointError, load_optimizer_state, model_from_checkpoint, read_checkpoint,
                         save_checkpoint)
from .config import ConfigError, TrainConfig, from_dict, to_dict
from .data import load_dataset
from .models import StepContext, get_model_class

RESUMABLE_CHANGES = {"steps", "log_every", "sample_every", "checkpoint_every", "device",
                     "amp", "channels_last", "compile", "eval_every"}
RANK_SEED_STRIDE = 7919          # rank r > 0 draws its batches from seed + 1 + r * stride


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite."""


def resolve_device(name: str) -> torch.device:
    """'auto' picks cuda, then mps, then cpu; an unavailable device is refused."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA GPU is available; use --device auto or cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps' was asked for but is not available; use --device auto or cpu")
    return torch.device(name)


def use_bf16(amp: str, device: torch.device) -> bool:
    """Whether to train under bf16 autocast: 'auto' means on CUDA only; 'bf16' off CUDA is refused."""
    if amp == "bf16" and device.type != "cuda":
        raise ConfigError(f"amp 'bf16' is for CUDA GPUs; this run is on {device.type}; use --amp auto or off")
    return amp != "off" and device.type == "cuda"


def use_channels_last(setting: str, model: torch.nn.Module, device: torch.device) -> bool:
    """channels_last for models with convolutions: 'auto' means on CUDA only (slower on our CPU)."""
    has_conv = any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in model.modules())
    return has_conv and (setting == "on" or (setting == "auto" and device.type == "cuda"))


def precision(bf16: bool, device: torch.device):
    """The context one training step runs in: bf16 autocast, or nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def make_config(train: TrainConfig | dict, model: dict | None = None) -> dict:
    """A validated run config {"train": {...}, "model": {...}}; raises ConfigError before any work."""
    train_config = train if isinstance(train, TrainConfig) else from_dict(TrainConfig, dict(train))
    model_class = get_model_class(train_config.model)
    model_config = from_dict(model_class.config_class, dict(model or {}))
    return {"train": to_dict(train_config), "model": to_dict(model_config)}


def build_for_data(config: dict, data):
    """Build the model of a run config, with image shape and classes taken from the data set."""
    model_class = get_model_class(config["train"]["model"])
    model_config = dict(config["model"], channels=data.channels, image_size=data.image_size,
                        num_classes=data.num_classes)
    return model_class(from_dict(model_class.config_class, model_config))


def save_grid(model, latents: dict, nrow: int, path: Path) -> None:
    """A PNG grid of G(latents) in eval mode, written atomically."""
    from torchvision.utils import save_image
    was_training = model.training
    model.eval()
    with torch.no_grad():
        images = model.generate(**latents).float().cpu()                 # (n, C, H, W) in [-1, 1]
    model.train(was_training)
    buffer = io.BytesIO()
    save_image(images, buffer, format="png", nrow=nrow, normalize=True, value_range=(-1, 1), padding=2)
    runs.atomic_write_bytes(path, buffer.getvalue())


def rng_state(device: torch.device, loop_generator: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "loop": loop_generator.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(tensors: dict, device: torch.device, loop_generator: torch.Generator) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    loop_generator.set_state(tensors["rng.loop"])
    if device.type == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)


class StopSignals:
    """SIGINT / SIGTERM set a flag instead of killing the run (main thread only)."""
    def __init__(self):
        self.received = None
        self.previous = {}

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


def train(config: dict | None, run_dir: str | Path, should_stop: Callable[[], bool] | None = None,
          on_event: Callable[[str, dict], None] | None = None, resume: bool = False) -> dict:
    """Train the model a run config describes into `run_dir`, or resume the run there; returns the final status.

    `config` is {"train": TrainConfig fields, "model": model config fields}; with resume=True it may be
    None (the run's own config.json is used) or change only steps, logging intervals and device.
    """
    run_dir = Path(run_dir)
    on_event = on_event or (lambda kind, payload: None)
    if resume:
        stored = runs.read_json(run_dir / "config.json")
        if stored is None:
            raise ConfigError(f"{run_dir} is not a run folder (no config.json); nothing to resume")
        if config is not None:
            changed = {k for k, v in config["train"].items() if stored["train"].get(k) != v}
            if changed - RESUMABLE_CHANGES or config["model"] != stored["model"]:
                raise ConfigError(f"a resumed run can change only {', '.join(sorted(RESUMABLE_CHANGES))}; "
                                  f"asked to change {', '.join(sorted(changed - RESUMABLE_CHANGES)) or 'model'}")
            stored["train"].update({k: config["train"][k] for k in changed})
        config = stored
    config = make_config(config["train"], config["model"])
    tc = TrainConfig(**config["train"])
    device = resolve_device(tc.device)
    use_bf16(tc.amp, device)                         # refuse bf16 off CUDA before any work

    group = distributed.from_environment(device.type)  # torchrun: one process per device
    run_lock = None                                  # saferuns: the one-writer lock (genlab.runs.claim_run)
    try:
        if group.active and device.type == "cuda":
            device = torch.device("cuda", group.local_rank)
        if group.is_main and not resume and (run_dir / "config.json").exists():
            raise ConfigError(f"{run_dir} already holds a run; resume it or choose another folder")
        if group.is_main and resume:
            runs.check_not_running(run_dir)          # saferuns: RunBusy names the live holder
        if group.local_rank != 0:
            group.barrier()                          # wait for local rank 0 to build any data cache
        data = load_dataset(tc)                      # a missing data set fails before any folder is made
        if group.local_rank == 0:
            group.barrier()
        if not group.is_main:                        # only rank 0 writes the run folder
            return _train(config, tc, data, device, run_dir, None, lambda kind, payload: None, resume,
                          group)
        run_dir.mkdir(parents=True, exist_ok=True)      # a STOP made while starting is honoured
        run_lock = runs.claim_run(run_dir, config)   # saferuns: lock, clean .*.tmp, reserve, config.json
        runs.write_status(run_dir, "starting", step=0, total_steps=tc.steps, error=None,
                          started=time.time(), device=str(device), world_size=group.world_size)
        try:
            return _train(config, tc, data, device, run_dir, should_stop, on_event, resume, group)
        except BaseException as error:
            message = runs.failure_message(error)    # saferuns: "disk full (ENOSPC) ..." on a full disk
            runs.write_status(run_dir, "failed", error=message, traceback=traceback.format_exc(limit=8))
            on_event("end", runs.read_status(run_dir))
            raise
    finally:
        if run_lock is not None:
            run_lock.release()                       # saferuns
        group.close()


def _train(config, tc: TrainConfig, data, device, run_dir: Path, should_stop, on_event, resume,
           group: distributed.Distributed) -> dict:
    main = group.is_main
    data = data.to(device)
    torch.manual_seed(tc.seed)
    model = build_for_data(config, data).to(device)
    bf16 = use_bf16(tc.amp, device)
    memory_format = torch.channels_last if use_channels_last(tc.channels_last, model, device) else None
    if memory_format is not None:
        model.to(memory_format=memory_format)                    # conv weights NHWC; same parameters
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True                    # fixed shapes: pick the fastest kernels
    config["model"] = to_dict(model.config)                      # with the shape taken from the data
    optimizers = model.make_optimizers()
    loop_generator = torch.Generator(device).manual_seed(tc.seed + 1 + RANK_SEED_STRIDE * group.rank)
    grid_generator = torch.Generator(device).manual_seed(tc.seed + 2)
    grid, nrow = model.grid_latents(grid_generator)
    meta = {"train_config": config["train"], "model_config": config["model"],
            "dataset": data.name, "num_images": len(data)}

    step, elapsed_before = 0, 0.0
    if resume and runs.checkpoint_path(run_dir).exists():
        header, tensors = read_checkpoint(runs.checkpoint_path(run_dir))
        model.load_state_dict(model_from_checkpoint(header, tensors).state_dict())
        load_optimizer_state(optimizers, header, tensors)
        set_rng_state(tensors, device, loop_generator)
        step, elapsed_before = header["step"], header.get("elapsed", 0.0)
        if main:
            runs.truncate_after(run_dir, step)
    elif resume and main:
        runs.truncate_after(run_dir, 0)
    if group.active:
        if not main:            # its own batches, latents and dropout, also after a resume
            loop_generator.manual_seed(tc.seed + 1 + RANK_SEED_STRIDE * group.rank + 104729 * step)
            torch.manual_seed(tc.seed + RANK_SEED_STRIDE * group.rank + 104729 * step)
        distributed.broadcast_module(model)                      # the same weights everywhere
        for optimizer in optimizers.values():
            distributed.average_gradients_before_step(optimizer, group.world_size)
    if tc.compile:
        for network in model.children():                         # in place: state_dict keys unchanged
            network.compile()
    if main:
        runs.atomic_write_json(run_dir / "config.json", config)

    def checkpoint():
        save_checkpoint(runs.checkpoint_path(run_dir), model,
                        dict(meta, step=step, elapsed=elapsed_before + time.time() - started),
                        optimizers, rng_state(device, loop_generator))
        on_event("checkpoint", {"step": step, "path": str(runs.checkpoint_path(run_dir))})

    def sample():
        path = runs.sample_path(run_dir, step)
        save_grid(model, grid, nrow, path)
        on_event("sample", {"step": step, "path": str(path)})

    next_batch = data.batcher(tc.batch_size, loop_generator, memory_format)
    model.train()
    started = time.time()
    if main:
        runs.write_status(run_dir, "running", step=step, total_steps=tc.steps)
    on_event("start", {"step": step, "total_steps": tc.steps, "device": str(device),
                       "num_parameters": sum(p.numel() for p in model.parameters()),
                       "world_size": group.world_size})
    images_per_step = tc.batch_size * group.world_size
    # ranks agree on stopping every step on the CPU, every log step on a GPU (no per-step host sync)
    stop_every = 1 if device.type == "cpu" else tc.log_every
    sums, counts, count, interval_start = {}, {}, 0, time.time()
    stop_reason = None
    evaluator = None
    if tc.eval_every and main:
        from .eval import TrainingEvaluator
        evaluator = TrainingEvaluator(config["train"])
    with StopSignals() as signals:
        while step < tc.steps:
            if not group.active or step % stop_every == 0:
                reason = signals.received or ("stop requested" if main and (
                    runs.stop_requested(run_dir) or (should_stop and should_stop())) else None)
                if group.active and distributed.any_rank(reason is not None, device):
                    reason = reason or "stop requested"
                if reason:
                    stop_reason = reason
                    break
            with precision(bf16, device):      # entered per step: autocast caches bf16 weight copies
                ctx = StepContext(step, loop_generator, diagnostics=(step + 1) % tc.log_every == 0,
                                  total_steps=tc.steps)
                logs = model.training_step(next_batch, optimizers, ctx)
            if group.active:
                distributed.broadcast_module(model, buffers_only=True)   # BatchNorm stats follow rank 0
            step += 1
            for key, value in logs.items():
                sums[key] = sums[key] + value if key in sums else value.float().clone()
                counts[key] = counts.get(key, 0) + 1
            count += 1
            eval_started = time.time()
            evals = evaluator(model) if evaluator and step % tc.eval_every == 0 else {}
            interval_start += time.time() - eval_started              # images/s counts training time only
            if evals and main and not (step % tc.log_every == 0 or step == tc.steps):
                runs.append_metrics(run_dir, dict(evals, step=step, time=elapsed_before + time.time() - started))
            if step % tc.log_every == 0 or step == tc.steps:
                now = time.time()
                keys = list(sums)
                values = torch.stack([sums[key] for key in keys])
                if group.active:
                    values = distributed.all_ranks_mean(values)      # metrics of all ranks together
                values = values.tolist()                              # one sync per log step
                record = {key: value / counts[key] for key, value in zip(keys, values)}
                bad = [key for key, value in record.items() if not math.isfinite(value)]
                if bad:
                    raise TrainingDiverged(f"{', '.join(bad)} became {record[bad[0]]} by step {step}; "
                                           f"training diverged (try a lower learning rate or enable R1)")
                record.update(evals, step=step, epoch=step * images_per_step / len(data),
                              time=elapsed_before + now - started,
                              images_per_s=count * images_per_step / max(now - interval_start, 1e-9))
                if main:
                    runs.append_metrics(run_dir, record)
                    runs.write_status(run_dir, "running", step=step, images_per_s=record["images_per_s"],
                                      last=record)
                on_event("log", record)
                sums, counts, count, interval_start = {}, {}, 0, time.time()
            if main and step % tc.sample_every == 0:
                sample()
            if main and step % tc.checkpoint_every == 0:
                checkpoint()
    state = "finished" if step >= tc.steps else "stopped"
    if not main:
        return {"state": state, "step": step, "stop_reason": stop_reason, "rank": group.rank}
    if not runs.sample_path(run_dir, step).exists():
        sample()
    checkpoint()
    runs.clear_stop(run_dir)
    status = runs.write_status(run_dir, state, step=step, stop_reason=stop_reason,
                               finished=time.time())
    on_event("end", status)
    return status


def resume(run_dir: str | Path, steps: int | None = None, **hooks) -> dict:
    """Continue a stopped, interrupted or finished run, optionally to a new total of steps."""
    config = runs.read_json(Path(run_dir) / "config.json")
    if config is None:
        raise ConfigError(f"{run_dir} is not a run folder (no config.json)")
    if steps is not None:
        config["train"]["steps"] = steps
    return train(config, run_dir, resume=True, **hooks)


__all__ = ["train", "resume", "make_config", "resolve_device", "TrainingDiverged", "CheckpointError"]
