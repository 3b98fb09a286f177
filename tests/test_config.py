"""Invalid configs are refused with messages that name the field."""
import pytest

from genlab import ConfigError, TrainConfig, make_config
from genlab.config import field_specs
from genlab.models import MODELS
from picks import GAN_PAIR, ONE_NETWORK, WITH_CODES


@pytest.mark.parametrize("train,model,message", [
    ({"model": "nope"}, {}, "unknown model 'nope'"),
    ({"dataset": "cifar"}, {}, "dataset must be one of"),
    ({"steps": 0}, {}, "steps must be >= 1"),
    ({"batch_size": "64"}, {}, "batch_size must be int"),
    ({"model": GAN_PAIR}, {"loss": "wasserstein"}, "loss must be one of"),
    ({"model": GAN_PAIR}, {"r1_gamma": -1.0}, "r1_gamma must be >= 0"),
    ({"model": GAN_PAIR}, {"zdim": 3}, f"unknown {MODELS[GAN_PAIR].config_class.__name__} field"),
    ({"model": WITH_CODES}, {"categories": 1}, "categories must be >= 2"),
    ({"model": ONE_NETWORK}, {"binarize": "yes"}, "binarize must be bool"),
    ({"lr": 1.0}, {}, "unknown TrainConfig field"),
    ({"model": ONE_NETWORK}, {"grad_clip": float("nan")}, "grad_clip must be a finite number"),
    ({"model": GAN_PAIR}, {"ema_decay": float("inf")}, "ema_decay must be a finite number"),
])
def test_invalid_configs_are_refused(train, model, message):
    with pytest.raises(ConfigError, match=message):
        make_config(train, model)


def test_valid_config_round_trips_and_ints_become_floats():
    config = make_config({"model": GAN_PAIR, "steps": 10}, {"lr_g": 1})
    assert config["train"]["steps"] == 10 and config["model"]["lr_g"] == 1.0
    assert isinstance(config["model"]["lr_g"], float)


def test_field_specs_describe_widgets():
    specs = {s["name"]: s for s in field_specs(TrainConfig)}
    assert specs["device"]["choices"] == ("auto", "cpu", "cuda", "mps")
    assert specs["steps"]["low"] == 1 and specs["steps"]["type"] is int
    assert specs["max_images"]["type"] is int and specs["max_images"]["default"] is None
    assert all(s["help"] for s in specs.values())
