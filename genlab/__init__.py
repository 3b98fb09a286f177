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
from .training import TrainingDiverged, make_config, prepare_run, resume, train

__version__ = "0.1.0"
__all__ = ["train", "resume", "prepare_run", "make_config", "Settings", "load", "export_checkpoint", "load_dataset", "MODELS",
           "build_model", "get_model_class", "register_model", "TrainConfig", "ConfigError", "DataError",
           "CheckpointError", "TrainingDiverged"]
