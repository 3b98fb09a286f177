"""Models picked by what they can do, never by name: the first registered model (in name order) whose
tiny build has a capability. Shared tests name a model through these, so a new family enters by its own
file and the tests stay true (the picks move with the registry)."""
from __future__ import annotations

from genlab.models import MODELS, HasCodes, HasEncoder, HasLikelihood, HasTrajectory, build_model, has_classes


def pick(wanted, what: str) -> str:
    """The first registered model (sorted by name) whose tiny build satisfies `wanted`."""
    for name in sorted(MODELS):
        if wanted(build_model(name, dict(MODELS[name].tiny))):
            return name
    raise LookupError(f"no registered model {what}")


def _optimizers(model) -> int:
    return len(model.make_optimizers())


# The cheapest run: one network, one optimizer, one forward and backward a step, and samples in one
# forward pass (not an iterative sampler).
ONE_NETWORK = pick(lambda m: _optimizers(m) == 1 and not isinstance(m, HasTrajectory),
                   "trained by one optimizer that samples in one pass")
# A generator/discriminator pair (two optimizers, a training-only critic) without classes or codes.
GAN_PAIR = pick(lambda m: _optimizers(m) == 2 and bool(m.training_only) and not has_classes(m)
                and not isinstance(m, HasCodes), "with an unconditional generator/discriminator pair")
CONDITIONAL = pick(has_classes, "that is class-conditional")
WITH_CODES = pick(lambda m: isinstance(m, HasCodes), "that infers latent codes")
WITH_ENCODER = pick(lambda m: isinstance(m, HasEncoder), "with an encoder")
# A likelihood over binary pixels (a Bernoulli decoder): scored on binarized test images.
BINARY_LIKELIHOOD = pick(lambda m: isinstance(m, HasLikelihood) and getattr(m.config, "likelihood", "") == "bernoulli",
                         "with a likelihood over binary pixels")
ITERATIVE_SAMPLER = pick(lambda m: isinstance(m, HasTrajectory), "that samples in many network passes")
