"""What is particular to each paper (architectures, likelihoods, conditioning), and the training
services every model shares (lr schedule, clipping, EMA) against hand computation. What every model
must do is asserted over the registry in test_contract.py."""
import math

import pytest
import torch

import genlab
from genlab.checkpoint import save_checkpoint
from genlab.models import MODELS, StepContext, build_model
from genlab.models.base import ImageConfig
from genlab.models.nn.ema import EMA
from genlab.models.nn.optim import lr_factor, optimizer_step


def tiny_model(name, channels=1, size=28, **extra):
    torch.manual_seed(0)
    return build_model(name, dict(MODELS[name].tiny, channels=channels, image_size=size, **extra))


def batches(channels, size, batch=6):
    gen = torch.Generator().manual_seed(1)

    def next_batch():
        x = torch.rand(batch, channels, size, size, generator=gen) * 2 - 1
        return x, torch.randint(10, (batch,), generator=gen)
    return next_batch


def test_latent_specs_describe_the_inputs():
    assert tiny_model("cgan").latent_spec().num_classes == 10
    info = tiny_model("infogan").latent_spec()
    assert info.categorical == [10] and info.continuous == 2 and info.continuous_range == (-1.0, 1.0)
    assert tiny_model("vae").latent_spec().to_dict()["z_dim"] == 4
    for name in ("gan", "dcgan", "cgan", "infogan", "vae"):                # vector latents stay vectors
        model = tiny_model(name)
        assert model.latent_spec().z_shape == (model.config.z_dim,) and model.latent_spec().is_vector


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


def test_extra_layers_deepen_g_and_d_at_the_lowest_resolution():
    plain, deep = tiny_model("dcgan"), tiny_model("dcgan", g_extra_layers=1, d_extra_layers=2)
    assert set(plain.state_dict()) < set(deep.state_dict())       # extra layers only add keys (old files: test_checkpoints)
    convs3 = [m for m in deep.discriminator.features if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs3) == 2 and len([m for m in deep.generator.net if isinstance(m, torch.nn.Conv2d)]) == 1
    for model, seen in ((plain, 10), (deep, 10 + 2 * 8)):          # what the centre of D's 7x7 map sees
        x = torch.zeros(1, 1, 28, 28, requires_grad=True)
        model.discriminator.eval()
        model.discriminator.features(x)[0, :, 3, 3].sum().backward()
        rows = x.grad[0, 0].abs().sum(1).nonzero().flatten()
        assert rows.max() - rows.min() + 1 == seen
    assert deep.generate(torch.randn(2, deep.config.z_dim)).shape == (2, 1, 28, 28)
    cgan = tiny_model("cgan", conditioning="projection", g_extra_layers=1, d_extra_layers=1)
    assert len(cgan.generator.net) == len(tiny_model("cgan").generator.net) + 3
    assert len(cgan.discriminator.body.features) == len(tiny_model("cgan").discriminator.features) + 3


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


def test_cgan_conditional_batchnorm_generator_trains_saves_and_uses_y(tmp_path):
    from genlab.models.nn.conv import ConditionalBatchNorm2d
    model = tiny_model("cgan", g_conditioning="cbn", conditioning="projection", ema_decay=0.9).train()
    norms = [m for m in model.generator.modules() if isinstance(m, ConditionalBatchNorm2d)]
    assert len(norms) == 2 and not any(isinstance(m, torch.nn.BatchNorm2d) and m.affine   # 7 -> 14 -> 28
                                       for m in model.generator.modules())       # every BN of G is conditional
    assert model.generator.net[0].in_channels == model.config.z_dim             # y is not joined to z
    before = [(n.gain.weight.clone(), n.bias.weight.clone()) for n in norms]
    model.training_step(batches(1, 28), model.make_optimizers(), StepContext(0, torch.Generator().manual_seed(3)))
    for norm, (gain, bias) in zip(norms, before):                  # every layer's class gains and biases learn
        assert not torch.equal(norm.gain.weight, gain) and not torch.equal(norm.bias.weight, bias)
    model.eval()
    z = torch.randn(4, model.config.z_dim)
    with torch.no_grad():
        images = [model.generate(z, torch.full((4,), k)) for k in (0, 1)]
    assert images[0].shape == (4, 1, 28, 28) and not torch.allclose(*images)     # same z, other class, other image
    save_checkpoint(tmp_path / "m.safetensors", model, {"step": 1})
    with torch.no_grad():
        assert torch.equal(genlab.load(tmp_path / "m.safetensors").generate(z, torch.ones(4, dtype=torch.long)),
                           images[1])


def test_cgan_ac_gan_class_term_teaches_d_to_classify_and_g_to_be_classified():
    with pytest.raises(genlab.ConfigError, match="projection"):
        tiny_model("cgan", aux_class_weight=1.0)                     # a concat D reads y from its input
    model = tiny_model("cgan", conditioning="projection", aux_class_weight=1.0, lr_d=2e-3, lr_g=2e-3).train()
    assert tiny_model("cgan", conditioning="projection").discriminator.classifier is None   # off: old files load
    gen = torch.Generator().manual_seed(1)
    means = torch.linspace(-0.9, 0.9, 10)

    def class_batches():                                           # class k: a flat image of grey level k
        y = torch.randint(10, (16,), generator=gen)
        return means[y][:, None, None, None] + 0.05 * torch.randn(16, 1, 28, 28, generator=gen), y
    optimizers, rng = model.make_optimizers(), torch.Generator().manual_seed(3)
    logs = [model.training_step(class_batches, optimizers, StepContext(i, rng, phases=("D",))) for i in range(40)]
    assert logs[-1]["loss/class_real"] < 0.5 * logs[0]["loss/class_real"]     # D learns P(C | real x)
    g_logs = [model.training_step(class_batches, optimizers, StepContext(40 + i, rng, phases=("G",)))
              for i in range(40)]
    assert g_logs[-1]["loss/class"] < 0.5 * g_logs[0]["loss/class"]           # G learns to be read as y
    assert all(math.isfinite(v.item()) for v in {**logs[-1], **g_logs[-1]}.values())


def test_the_shipped_families_are_registered():
    assert set(MODELS) >= {"gan", "dcgan", "cgan", "infogan", "vae"}


def test_gans_export_without_their_discriminator_and_the_vae_keeps_its_encoder():
    assert all(MODELS[name].training_only == ("discriminator",) for name in ("gan", "dcgan", "cgan"))
    assert MODELS["vae"].training_only == ()
    assert MODELS["infogan"].training_only == ()              # D's body carries Q(c | x)
    gan, vae = tiny_model("dcgan", ema_decay=0.9), tiny_model("vae", ema_decay=0.9)
    assert type(gan.ema.shadow) is type(gan.generator) and type(vae.ema.shadow) is type(vae.decoder)


# ---------------------------------------------------------------- training services
@pytest.mark.parametrize("step,expected", [(0, 0.25), (1, 0.5), (2, 0.75), (3, 1.0), (4, 1.0), (100, 1.0)])
def test_lr_warmup_is_linear_from_one_over_warmup(step, expected):
    assert lr_factor(step, total_steps=None, warmup=4) == pytest.approx(expected)


@pytest.mark.parametrize("step,expected", [
    (0, 1.0), (2, 0.5 * (1 + math.cos(math.pi * 0.2))), (5, 0.5), (10, 0.0), (15, 0.0)])
def test_cosine_decay_follows_loshchilov_eq_5(step, expected):
    assert lr_factor(step, total_steps=10, decay="cosine") == pytest.approx(expected, abs=1e-12)


def test_decay_starts_after_the_warmup():
    assert lr_factor(1, 12, warmup=2, decay="cosine") == pytest.approx(1.0)        # still warming up
    assert lr_factor(7, 12, warmup=2, decay="cosine") == pytest.approx(0.5)        # (7 - 2) / 10 of the way
    assert lr_factor(7, 12, warmup=2, decay="linear") == pytest.approx(0.5)
    assert lr_factor(3, 10, decay="linear") == pytest.approx(0.7)
    assert lr_factor(3, None, decay="linear") == 1.0                               # no planned length: no decay
    with pytest.raises(ValueError, match="lr_decay"):
        lr_factor(3, 10, decay="step")


def test_optimizer_step_schedules_the_lr_and_clips_the_gradient():
    weight = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    config = ImageConfig(lr_warmup=2, grad_clip=1.0)
    norm = optimizer_step(optimizer, (weight * weight.detach()).sum(), StepContext(0, torch.Generator()), config)
    assert norm.item() == pytest.approx(5.0)                                       # ||(3, 4)|| before clipping
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)                  # warm-up: 1/2 at step 0
    torch.testing.assert_close(weight.detach(), torch.tensor([3 - 0.05 * 0.6, 4 - 0.05 * 0.8]))
    optimizer_step(optimizer, weight.sum(), StepContext(1, torch.Generator()), config)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)                   # from the initial lr, not compounded


def test_ema_one_update_by_hand():
    network = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.BatchNorm1d(1))
    torch.nn.init.constant_(network[0].weight, 1.0)
    ema = EMA(network, decay=0.99)
    torch.nn.init.constant_(network[0].weight, 3.0)
    network[1].running_mean.fill_(7.0)
    ema.update(network, step=0)                             # decay warms up: min(0.99, 1/10) = 0.1
    torch.testing.assert_close(ema.shadow[0].weight, torch.full((1, 2), 0.1 * 1.0 + 0.9 * 3.0))
    assert ema.shadow[1].running_mean.item() == 7.0         # buffers are copied, not averaged
    ema.update(network, step=10_000)                        # min(0.99, 10001/10010) = 0.99
    torch.testing.assert_close(ema.shadow[0].weight, torch.full((1, 2), 0.99 * 2.8 + 0.01 * 3.0))
    assert not any(p.requires_grad for p in ema.parameters())
    assert not ema.train().shadow.training                  # the average always runs in eval mode


def test_ema_decay_without_a_network_to_average_is_refused():
    from genlab.models import GenerativeModel

    class NoAverage(GenerativeModel):
        make_optimizers = training_step = sample = lambda *args, **kwargs: None

    NoAverage(ImageConfig()).attach_ema()                              # ema_decay 0: nothing to do
    with pytest.raises(genlab.ConfigError, match="ema_decay"):
        NoAverage(ImageConfig(ema_decay=0.9)).attach_ema()
