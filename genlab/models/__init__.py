"""Models, one file each, registered by name in `MODELS`."""
from .base import MODELS, GenerativeModel, LatentSpec, build_model, get_model_class, register_model
from . import gan, dcgan, cgan, infogan, vae  # noqa: F401  (each registers itself)

__all__ = ["MODELS", "GenerativeModel", "LatentSpec", "build_model", "get_model_class", "register_model"]
