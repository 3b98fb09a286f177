"""Each model on a tiny config: shapes, one training step, save/load round trip."""
import math

import pytest
import torch

import genlab
from genlab.checkpoint import save_checkpoint
from genlab.models import MODELS, StepContext, build_model

from helpers import TINY_MODEL

SHAPES = [(1, 28), (3, 32), (3, 64)]


def tiny_model(name, channels=1, size=28, **extra):
    torch.manual_seed(0)
    return build_model(name, dict(TINY_MODEL[name], channels=channels, image_size=size, **extra))


def batches(channels, size, batch=6):
    gen = torch.Generator().manual_seed(1)

    def next_batch():
        x = torch.rand(batch, channels, size, size, generator=gen) * 2 - 1
        return x, torch.randint(10, (batch,), generator=gen)
    return next_batch


def test_registry_has_the_five_models():
    assert set(MODELS) >= {"gan", "dcgan", "cgan", "infogan", "vae"}


@pytest.mark.parametrize("name", sorted(TINY_MODEL))
@pytest.mark.parametrize("channels,size", SHAPES)
def test_generate_shape_and_range(name, channels, size):
    model = tiny_model(name, channels, size).eval()
    latents = model.sample_latents(5, torch.Generator().manual_seed(0))
    images = model.generate(**latents)
    assert images.shape == (5, channels, size, size)
    assert images.min() >= -1 and images.max() <= 1
    spec = model.latent_spec()
    assert latents["z"].shape == (5, spec.z_dim)
    assert ("y" in latents) == bool(spec.num_classes)
    assert ("cat" in latents) == bool(spec.categorical)


@pytest.mark.parametrize("name", sorted(TINY_MODEL))
def test_one_training_step_changes_weights_and_returns_finite_losses(name):
    model = tiny_model(name).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizers = model.make_optimizers()
    logs = model.training_step(batches(1, 28), optimizers, StepContext(0, torch.Generator().manual_seed(2), True))
    assert logs and all(k.count("/") == 1 for k in logs)
    assert all(math.isfinite(v.item()) for v in logs.values())
    expected = {"vae": {"loss/total", "loss/recon", "loss/kl"}}.get(
        name, {"loss/d", "loss/g", "d/real", "d/fake", "r1/grad_norm"})
    assert expected <= set(logs)
    changed = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    parts = {"vae": ("encoder", "decoder")}.get(name, ("generator", "discriminator"))
    for part in parts:
        assert any(k.startswith(part) for k in changed), f"{part} weights did not change"


@pytest.mark.parametrize("name", sorted(TINY_MODEL))
def test_save_load_gives_identical_samples(name, tmp_path):
    model = tiny_model(name).train()
    model.training_step(batches(1, 28), model.make_optimizers(), StepContext(0, torch.Generator().manual_seed(3)))
    model.eval()
    save_checkpoint(tmp_path / "m.safetensors", model, {"step": 1})
    loaded = genlab.load(tmp_path / "m.safetensors")
    latents = model.sample_latents(7, torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(model.generate(**latents), loaded.generate(**latents))
    assert loaded.latent_spec() == model.latent_spec()


def test_latent_specs_describe_the_inputs():
    assert tiny_model("cgan").latent_spec().num_classes == 10
    info = tiny_model("infogan").latent_spec()
    assert info.categorical == [10] and info.continuous == 2 and info.continuous_range == (-1.0, 1.0)
    assert tiny_model("vae").latent_spec().to_dict()["z_dim"] == 4


def test_cgan_grid_rows_are_classes_and_infogan_rows_are_categories():
    gen = torch.Generator().manual_seed(0)
    latents, nrow = tiny_model("cgan").grid_latents(gen)
    assert nrow == 10 and latents["y"].tolist() == [i for i in range(10) for _ in range(10)]
    latents, nrow = tiny_model("infogan").grid_latents(gen)
    assert latents["cat"][:, 0].tolist() == [i for i in range(10) for _ in range(10)]


def test_dcgan_architecture_follows_the_paper():
    model = tiny_model("dcgan", 3, 64)
    convs_t = [m for m in model.generator.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(convs_t) == 5                                       # 1 -> 4 -> 8 -> 16 -> 32 -> 64
    assert isinstance(list(model.generator.modules())[-1], torch.nn.Tanh)
    leaky = [m for m in model.discriminator.modules() if isinstance(m, torch.nn.LeakyReLU)]
    assert leaky and all(m.negative_slope == 0.2 for m in leaky)
    first_conv_block = list(model.discriminator.features)[:2]     # no norm on D's first layer
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in first_conv_block)
    weights = torch.cat([m.weight.flatten() for m in convs_t])
    assert abs(weights.std().item() - 0.02) < 0.005                 # N(0, 0.02) init


def test_r1_with_batchnorm_switches_or_warns():
    model = tiny_model("dcgan", r1_gamma=1.0)                      # d_norm auto -> per-sample norm
    assert not model.uses_batchnorm_in_d()
    with pytest.warns(UserWarning, match="BatchNorm"):
        tiny_model("dcgan", r1_gamma=1.0, d_norm="batch")


def test_vae_likelihoods():
    assert tiny_model("vae").config.likelihood == "bernoulli"
    rgb = tiny_model("vae", 3, 32)
    assert rgb.config.likelihood == "gaussian"
    with pytest.raises(genlab.ConfigError, match="Bernoulli"):
        tiny_model("vae", 3, 32, likelihood="bernoulli")


def test_cgan_projection_discriminator_trains_saves_and_uses_y(tmp_path):
    model = tiny_model("cgan", conditioning="projection").train()
    logs = model.training_step(batches(1, 28), model.make_optimizers(), StepContext(0, torch.Generator().manual_seed(3)))
    assert all(math.isfinite(v.item()) for v in logs.values())
    assert model.discriminator.embed.weight.grad is not None        # the embedding of y is trained
    model.eval()
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        logits = [model.discriminate(x, torch.full((4,), k))[0] for k in (0, 1)]
    assert not torch.allclose(*logits)                                 # same image, other class, other logit
    save_checkpoint(tmp_path / "m.safetensors", model, {"step": 1})
    loaded = genlab.load(tmp_path / "m.safetensors")
    with torch.no_grad():
        assert torch.equal(loaded.discriminate(x, torch.zeros(4, dtype=torch.long))[0],
                           model.discriminate(x, torch.zeros(4, dtype=torch.long))[0])
