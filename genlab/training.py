"""The training loop: one function, `train`, used by the CLI, the dashboard and the tests.

It knows nothing of any UI. It writes the run folder (see `genlab.runs`) and reports through two
hooks: `should_stop()` is asked before every step, `on_event(kind, payload)` is told of
"start", "log", "sample", "checkpoint" and "end".
"""
from __future__ import annotations

import io
import math
import signal
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

import torch

from . import runs
from .checkpoint import (CheckpointError, load_optimizer_state, model_from_checkpoint, read_checkpoint,
                         save_checkpoint)
from .config import ConfigError, TrainConfig, from_dict, to_dict
from .data import load_dataset
from .models import get_model_class

RESUMABLE_CHANGES = {"steps", "log_every", "sample_every", "checkpoint_every", "device", "eval_every"}


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

    if not resume and (run_dir / "config.json").exists():
        raise ConfigError(f"{run_dir} already holds a run; resume it or choose another folder")
    data = load_dataset(tc)                          # a missing data set fails before any folder is made
    run_dir.mkdir(parents=True, exist_ok=True)
    runs.clear_stop(run_dir)
    runs.write_status(run_dir, "starting", step=0, total_steps=tc.steps, error=None,
                      started=time.time(), device=str(device))
    try:
        return _train(config, tc, data, device, run_dir, should_stop, on_event, resume)
    except BaseException as error:
        message = f"{type(error).__name__}: {error}"
        runs.write_status(run_dir, "failed", error=message, traceback=traceback.format_exc(limit=8))
        on_event("end", runs.read_status(run_dir))
        raise


def _train(config, tc: TrainConfig, data, device, run_dir: Path, should_stop, on_event, resume) -> dict:
    data = data.to(device)
    torch.manual_seed(tc.seed)
    model = build_for_data(config, data).to(device)
    config["model"] = to_dict(model.config)                      # with the shape taken from the data
    optimizers = model.make_optimizers()
    loop_generator = torch.Generator(device).manual_seed(tc.seed + 1)
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
        runs.truncate_after(run_dir, step)
    elif resume:
        runs.truncate_after(run_dir, 0)
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

    next_batch = data.batcher(tc.batch_size, loop_generator)
    model.train()
    started = time.time()
    runs.write_status(run_dir, "running", step=step, total_steps=tc.steps)
    on_event("start", {"step": step, "total_steps": tc.steps, "device": str(device),
                       "num_parameters": sum(p.numel() for p in model.parameters())})
    sums, count, interval_start = {}, 0, time.time()
    stop_reason = None
    evaluator = None
    if tc.eval_every:
        from .eval import TrainingEvaluator
        evaluator = TrainingEvaluator(config["train"])
    with StopSignals() as signals:
        while step < tc.steps:
            if signals.received or runs.stop_requested(run_dir) or (should_stop and should_stop()):
                stop_reason = signals.received or "stop requested"
                break
            logs = model.training_step(next_batch, optimizers, loop_generator,
                                       measure=(step + 1) % tc.log_every == 0)
            step += 1
            for key, value in logs.items():
                sums[key] = sums[key] + value if key in sums else value.clone()
            count += 1
            eval_started = time.time()
            evals = evaluator(model) if evaluator and step % tc.eval_every == 0 else {}
            interval_start += time.time() - eval_started              # images/s counts training time only
            if evals and not (step % tc.log_every == 0 or step == tc.steps):
                runs.append_metrics(run_dir, dict(evals, step=step, time=elapsed_before + time.time() - started))
            if step % tc.log_every == 0 or step == tc.steps:
                now = time.time()
                record = {key: value.item() / count for key, value in sums.items()}   # one sync per log step
                bad = [key for key, value in record.items() if not math.isfinite(value)]
                if bad:
                    raise TrainingDiverged(f"{', '.join(bad)} became {record[bad[0]]} by step {step}; "
                                           f"training diverged (try a lower learning rate or enable R1)")
                record.update(evals, step=step, epoch=step * tc.batch_size / len(data),
                              time=elapsed_before + now - started,
                              images_per_s=count * tc.batch_size / max(now - interval_start, 1e-9))
                runs.append_metrics(run_dir, record)
                runs.write_status(run_dir, "running", step=step, images_per_s=record["images_per_s"],
                                  last=record)
                on_event("log", record)
                sums, count, interval_start = {}, 0, time.time()
            if step % tc.sample_every == 0:
                sample()
            if step % tc.checkpoint_every == 0:
                checkpoint()
    if not runs.sample_path(run_dir, step).exists():
        sample()
    checkpoint()
    runs.clear_stop(run_dir)
    state = "finished" if step >= tc.steps else "stopped"
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
