"""Models, one file each, registered by name in `MODELS`."""
from .base import (GenerativeModel, HasCodes, HasEncoder, HasLatents, HasLikelihood, HasSamplingKnobs,
                   HasTrajectory, LatentModel, LatentSpec, StepContext, has_classes)
from .registry import MODELS, build_model, get_model_class, register_model, unregister_model
from . import gan, dcgan, cgan, infogan, vae, ddpm, flow  # noqa: F401  (each registers itself)

__all__ = ["MODELS", "GenerativeModel", "LatentModel", "LatentSpec", "StepContext", "HasLatents", "HasEncoder",
           "HasLikelihood", "HasCodes", "HasTrajectory", "HasSamplingKnobs", "has_classes", "build_model",
           "get_model_class", "register_model", "unregister_model"]
