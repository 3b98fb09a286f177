"""genlab: a hands-on lab for deep generative image models."""
import os

# Idle OpenMP threads sleep instead of spinning. Set before torch loads libgomp (genlab is imported
# first by train.py and by the dashboard's training processes). On a CPU shared with other work,
# spinning threads burn the time slices their busy siblings need: DCGAN on 2 shared cores trained
# up to 10x faster with it (see README, Performance). An OMP_WAIT_POLICY already set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .checkpoint import CheckpointError, export_checkpoint, load
from .config import ConfigError, TrainConfig
from .data import DataError, load_dataset
from .models import MODELS, build_model, get_model_class, register_model
from .settings import Settings
from . import training
from .training import TrainingDiverged, make_config, prepare_run

__version__ = "0.1.0"


def train(config, run_dir, should_stop=None, on_event=None, resume=False, evaluator=None) -> dict:
    """`genlab.training.train`, with genlab.eval's quick evaluator when the run asks for one (eval_every > 0)
    and none is given; the loop itself never imports the metrics."""
    if evaluator is None:
        from .cli import make_evaluator
        evaluator = make_evaluator(prepare_run(run_dir, config, resume, writer=False).config["train"])
    return training.train(config, run_dir, should_stop, on_event, resume, evaluator)


def resume(run_dir, steps: int | None = None, **hooks) -> dict:
    """Continue a stopped, interrupted or finished run, optionally to a new total of steps (see `train`)."""
    return train({"train": {"steps": steps}} if steps is not None else None, run_dir, resume=True, **hooks)
__all__ = ["train", "resume", "prepare_run", "make_config", "Settings", "load", "export_checkpoint", "load_dataset", "MODELS",
           "build_model", "get_model_class", "register_model", "TrainConfig", "ConfigError", "DataError",
           "CheckpointError", "TrainingDiverged"]
