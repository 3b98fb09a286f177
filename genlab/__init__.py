"""genlab: a hands-on lab for deep generative image models."""
from .checkpoint import CheckpointError, export_checkpoint, load
from .config import ConfigError, TrainConfig
from .data import DataError, load_dataset
from .models import MODELS, build_model, get_model_class, register_model
from .training import TrainingDiverged, make_config, resume, train

__version__ = "0.1.0"
__all__ = ["train", "resume", "make_config", "load", "export_checkpoint", "load_dataset", "MODELS",
           "build_model", "get_model_class", "register_model", "TrainConfig", "ConfigError", "DataError",
           "CheckpointError", "TrainingDiverged"]
