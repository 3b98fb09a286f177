"""One place that decides how a run starts: fresh, or resumed from its folder, and what may change.

The CLI, the runner's training process and `resume()` all go through `prepare_run`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .. import runs
from ..config import ConfigError, TrainConfig, field_specs, from_dict, to_dict
from ..models import get_model_class

# TrainConfig fields a resumed run may change; the model and the data stay what they were.
RESUMABLE_CHANGES = frozenset({"steps", "log_every", "sample_every", "checkpoint_every", "device", "amp",
                               "channels_last", "compile", "eval_every", "early_grids"})


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


def model_changes(model: str, stored: dict, requested: dict) -> list[str]:
    """Model fields a request really changes: not those set from the data set (channels, image size,
    classes), nor values the model resolves to the stored ones (e.g. a VAE's likelihood 'auto')."""
    differs = {k for k, v in requested.items() if stored.get(k) != v}
    if not differs:
        return []
    model_class = get_model_class(model)
    derived = {s["name"] for s in field_specs(model_class.config_class) if s["derived"]}
    values = dict(stored, **{k: v for k, v in requested.items() if k not in derived})
    try:
        with torch.device("meta"):                                 # resolve the config; allocate nothing
            values = to_dict(model_class(from_dict(model_class.config_class, values)).config)
    except Exception:  # noqa: BLE001  (a request the model refuses is a change, refused below)
        pass
    return sorted(k for k in differs if k not in derived and values.get(k) != stored.get(k))


@dataclass(frozen=True)
class PreparedRun:
    """A run folder and the validated config to train it with; `resume`: continue from its checkpoint."""
    run_dir: Path
    config: dict
    resume: bool


def prepare_run(run_dir: str | Path, config_or_overrides: dict | None, resume: bool,
                writer: bool = True) -> PreparedRun:
    """Decide how the run in `run_dir` starts, refusing what cannot be done, before any work.

    Fresh (resume=False): `config_or_overrides` is a full {"train", "model"} config; a folder that
    already holds a run is refused. Resume: the folder's config.json is the config; the argument may
    be None or {"train": {...}, "model": {...}} with the values to change, only RESUMABLE_CHANGES
    (values equal to the stored ones are no change). A run still active in another process is refused,
    and a stale STOP request from an earlier stop is cleared. `writer=False` (ranks > 0 under torchrun)
    only resolves the config.
    """
    run_dir = Path(run_dir)
    if not resume:
        if config_or_overrides is None:
            raise ConfigError("a new run needs a config; to continue a run, resume it")
        config = make_config(config_or_overrides["train"], config_or_overrides.get("model"))
        if writer and (run_dir / "config.json").exists():
            raise ConfigError(f"{run_dir} already holds a run; resume it or choose another folder")
        return PreparedRun(run_dir, config, resume=False)

    stored = runs.read_json(run_dir / "config.json")
    if not isinstance(stored, dict) or not isinstance(stored.get("train"), dict):
        raise ConfigError(f"{run_dir} is not a run folder (no config.json); nothing to resume")
    overrides = config_or_overrides or {}
    changed_train = {k: v for k, v in (overrides.get("train") or {}).items() if stored["train"].get(k) != v}
    changed_model = model_changes(stored["train"]["model"], stored.get("model") or {}, overrides.get("model") or {})
    refused = sorted(set(changed_train) - RESUMABLE_CHANGES) + [f"model.{k}" for k in changed_model]
    if refused:
        raise ConfigError(f"a resumed run can change only {', '.join(sorted(RESUMABLE_CHANGES))}; "
                          f"asked to change {', '.join(refused)}")
    config = make_config(dict(stored["train"], **changed_train), stored.get("model"))
    if writer:
        runs.check_not_running(run_dir)                           # RunBusy names the live holder
        runs.clear_stop(run_dir)                                  # a stale request from an earlier stop
    return PreparedRun(run_dir, config, resume=True)
