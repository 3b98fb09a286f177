"""The fast-path options of TrainConfig: amp, channels_last, and metrics averaged per key."""
import math

import pytest
import torch
from safetensors.torch import load_file

from genlab import runs
from genlab.config import ConfigError, TrainConfig
from genlab.data import load_dataset
from genlab.models import MODELS, StepContext, build_model
from genlab.training import build_for_data, make_config, precision, resume, train
from picks import GAN_PAIR

TINY = {"g_channels": 8, "d_channels": 8}


def tiny_config(**train_fields) -> dict:
    fields = {"model": GAN_PAIR, "dataset": "synthetic", "device": "cpu", "steps": 4, "batch_size": 16,
              "log_every": 2, "sample_every": 100, "checkpoint_every": 100}
    return make_config(dict(fields, **train_fields), TINY)


def test_bf16_is_refused_off_cuda_before_any_folder_is_made(tmp_path):
    with pytest.raises(ConfigError, match="amp 'bf16' is for CUDA"):
        train(tiny_config(amp="bf16"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_bf16_autocast_keeps_the_gan_losses_close_to_float32():
    """The training step under bf16 autocast (CPU autocast here, CUDA's in training) stays finite and
    follows the float32 losses from the same start."""
    tc = TrainConfig(model=GAN_PAIR, dataset="synthetic", batch_size=16)
    data, losses = load_dataset(tc), {}
    for bf16 in (False, True):
        torch.manual_seed(0)
        model = build_for_data(make_config(tc, TINY), data)
        optimizers, generator = model.make_optimizers(), torch.Generator().manual_seed(1)
        next_batch = data.batcher(16, generator)
        steps = []
        for _ in range(5):
            with precision(bf16, torch.device("cpu")):          # entered per step, as the training loop does
                steps.append(model.training_step(next_batch, optimizers, StepContext(0, generator)))
        losses[bf16] = torch.tensor([[s["loss/d"].float(), s["loss/g"].float()] for s in steps])
    assert torch.isfinite(losses[True]).all()
    assert (losses[True] - losses[False]).abs().max() < 0.1, (losses[True] - losses[False])


def test_channels_last_trains_the_same_model_and_resumes_exactly(tmp_path):
    train(tiny_config(channels_last="on"), tmp_path / "nhwc")
    train(tiny_config(channels_last="off"), tmp_path / "nchw")
    train(tiny_config(channels_last="on", steps=2), tmp_path / "half")
    resume(tmp_path / "half", steps=4)
    nhwc, nchw, resumed = (load_file(str(runs.checkpoint_path(tmp_path / name))) for name in ("nhwc", "nchw", "half"))
    for key, value in nhwc.items():
        if key.startswith("model."):
            assert value.equal(resumed[key]), key                      # 2 + 2 resumed steps == 4 steps
            assert torch.allclose(value.float(), nchw[key].float(), atol=1e-3), key   # same math, other layout (Adam steps ~lr)


def test_a_value_measured_only_at_log_steps_is_not_divided_by_the_interval(tmp_path):
    """r1/grad_norm is measured once per log interval; its logged value must not depend on log_every."""
    train(tiny_config(log_every=1), tmp_path / "every")
    train(tiny_config(log_every=4), tmp_path / "fourth")
    every = {r["step"]: r for r in runs.read_metrics(tmp_path / "every")}
    fourth = runs.read_metrics(tmp_path / "fourth")[-1]
    assert fourth["step"] == 4
    assert math.isclose(fourth["r1/grad_norm"], every[4]["r1/grad_norm"], rel_tol=1e-5)
    assert math.isclose(fourth["loss/d"], sum(every[s]["loss/d"] for s in range(1, 5)) / 4, rel_tol=1e-5)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_channels_last_auto_on_the_cpu_is_for_all_convolutional_models_only(name):
    """auto on the CPU: NHWC where every layer is a convolution (measured faster), never with Linear
    layers (their flatten copies back to NCHW) nor without convolutions; off is always off."""
    from genlab.training import use_channels_last
    model = build_model(name, dict(MODELS[name].tiny, channels=1, image_size=28))
    layers = [type(m) for m in model.modules()]
    all_convolutional = any(issubclass(k, torch.nn.modules.conv._ConvNd) for k in layers) and \
        not any(issubclass(k, torch.nn.Linear) for k in layers)
    cpu = torch.device("cpu")
    assert use_channels_last("auto", model, cpu) == all_convolutional
    assert use_channels_last("off", model, cpu) is False
