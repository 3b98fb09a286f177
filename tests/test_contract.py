"""The model contract, asserted for every registered model and the test-only toy (tests/toy_model.py),
each from its own `tiny` config. No model is named here: capabilities drive the extra assertions."""
import math

import pytest
import torch

import genlab
from genlab import runs
from genlab.checkpoint import read_checkpoint, save_checkpoint
from genlab.models import (MODELS, HasCodes, HasEncoder, HasLatents, HasLikelihood, StepContext, build_model,
                           has_classes)
from genlab.models.base import sample_prior
from genlab.models.nn.ema import EMA

import toy_model
from helpers import tiny_config

NAMES = sorted(MODELS) + [toy_model.NAME]
SHAPES = [(1, 28), (3, 32), (3, 64)]
EMA_ON = {"ema_decay": 0.9}
SERVICES = {"ema_decay": 0.9, "lr_decay": "cosine", "lr_warmup": 2, "grad_clip": 0.5}


@pytest.fixture(autouse=True)
def toy_registered():
    with toy_model.registered():
        yield


def build(name, channels=1, size=28, **fields):
    torch.manual_seed(0)
    return build_model(name, dict(MODELS[name].tiny, channels=channels, image_size=size, **fields))


def batches(channels=1, size=28, batch=6):
    gen = torch.Generator().manual_seed(1)

    def next_batch():
        x = torch.rand(batch, channels, size, size, generator=gen) * 2 - 1    # (B, C, H, W) in [-1, 1]
        return x, torch.randint(10, (batch,), generator=gen)
    return next_batch


def one_step(model, step=0, diagnostics=True):
    ctx = StepContext(step, torch.Generator().manual_seed(2), diagnostics, total_steps=10)
    return model.train().training_step(batches(), model.make_optimizers(), ctx)


def trainable_parts(model) -> dict:
    """Top-level sub-networks with trainable parameters (an EMA copy is not trained)."""
    return {name: part for name, part in model.named_children()
            if not isinstance(part, EMA) and any(p.requires_grad for p in part.parameters())}


def images01(n=16, channels=1, size=28):
    """Binary images in [0, 1], valid targets for a Bernoulli and a Gaussian likelihood alike."""
    return torch.bernoulli(torch.full((n, channels, size, size), 0.3), generator=torch.Generator().manual_seed(5))


# ---------------------------------------------------------------- one training step
@pytest.mark.parametrize("name", NAMES)
def test_logs_are_finite_detached_scalars_named_group_slash_name(name):
    logs = one_step(build(name))
    assert logs
    for key, value in logs.items():
        group, _, metric = key.partition("/")
        assert group and metric and "/" not in metric, key
        assert torch.is_tensor(value) and value.dim() == 0 and not value.requires_grad, key
        assert math.isfinite(value.item()), key


@pytest.mark.parametrize("fields", [{}, SERVICES], ids=["plain", "services"])
@pytest.mark.parametrize("name", NAMES)
def test_every_trainable_subnetwork_changes_after_one_step(name, fields):
    model = build(name, **fields)
    parts = trainable_parts(model)
    assert parts, "a model with nothing to train"
    before = {part: [p.detach().clone() for p in network.parameters()] for part, network in parts.items()}
    one_step(model)
    for part, network in parts.items():
        assert any(not torch.equal(a, b) for a, b in zip(before[part], network.parameters())), \
            f"{part} did not change"


# ---------------------------------------------------------------- sampling
@pytest.mark.parametrize("channels,size", SHAPES)
@pytest.mark.parametrize("name", NAMES)
def test_sample_has_the_image_shape_and_range(name, channels, size):
    model = build(name, channels, size).eval()
    images = model.sample(5, torch.Generator().manual_seed(0))
    assert images.shape == (5, channels, size, size)
    assert torch.isfinite(images).all() and images.min() >= -1 and images.max() <= 1
    if isinstance(model, HasLatents):                       # latents of the shape the spec declares
        spec = model.latent_spec()
        assert math.prod(spec.z_shape) == spec.z_dim and spec.is_vector == (len(spec.z_shape) == 1)
        latents = sample_prior(spec, 5, torch.Generator().manual_seed(0), model.device)
        assert latents["z"].shape == (5, *spec.z_shape)
        with torch.no_grad():
            assert model.generate(**latents).shape == (5, channels, size, size)


@pytest.mark.parametrize("name", NAMES)
def test_sample_grid_is_a_square_of_images(name):
    model = build(name).eval()
    images, rows = model.sample_grid(torch.Generator().manual_seed(0))
    assert images.shape == (rows * rows, 1, 28, 28) and 2 <= rows <= 10


@pytest.mark.parametrize("name", NAMES)
def test_class_conditional_models_honour_y(name):
    model = build(name).eval()
    if not has_classes(model):
        pytest.skip("not class-conditional")
    zeros, ones = torch.zeros(6, dtype=torch.long), torch.ones(6, dtype=torch.long)
    a = model.sample(6, torch.Generator().manual_seed(0), y=zeros)
    b = model.sample(6, torch.Generator().manual_seed(0), y=ones)
    assert torch.equal(a, model.sample(6, torch.Generator().manual_seed(0), y=zeros))
    assert not torch.allclose(a, b)                          # the same noise, another class


# ---------------------------------------------------------------- capabilities
@pytest.mark.parametrize("name", NAMES)
def test_likelihood_is_per_image_finite_and_tightens_with_k(name):
    model = build(name).eval()
    if not isinstance(model, HasLikelihood):
        pytest.skip("no likelihood")
    one_step(model)
    model.eval()
    x01 = images01()
    nll_1 = model.nll(x01, torch.Generator().manual_seed(0), k=1)
    nll_64 = model.nll(x01, torch.Generator().manual_seed(0), k=64)
    assert nll_1.shape == nll_64.shape == (16,)
    assert torch.isfinite(nll_1).all() and torch.isfinite(nll_64).all() and (nll_64 > 0).all()
    assert nll_64.mean() <= nll_1.mean()                   # Burda 2015 thm. 1: the bound tightens with k


@pytest.mark.parametrize("name", NAMES)
def test_encoder_gives_a_posterior_over_the_latent(name):
    model = build(name).eval()
    if not isinstance(model, HasEncoder):
        pytest.skip("no encoder")
    with torch.no_grad():
        mean, log_var = model.encode(images01(4) * 2 - 1)
    shape = (4, *model.latent_spec().z_shape) if isinstance(model, HasLatents) else mean.shape
    assert mean.shape == log_var.shape == shape
    assert torch.isfinite(mean).all() and torch.isfinite(log_var).all()


@pytest.mark.parametrize("name", NAMES)
def test_codes_are_inferred_within_their_ranges(name):
    model = build(name).eval()
    if not isinstance(model, HasCodes):
        pytest.skip("no codes")
    spec = model.latent_spec()
    with torch.no_grad():
        codes = model.infer_codes(model.sample(8, torch.Generator().manual_seed(0)))
    assert codes["cat"].shape == (8, len(spec.categorical))
    for column, categories in enumerate(spec.categorical):
        assert 0 <= codes["cat"][:, column].min() and codes["cat"][:, column].max() < categories


# ---------------------------------------------------------------- EMA
@pytest.mark.parametrize("name", NAMES)
def test_a_training_step_moves_the_ema(name):
    model = build(name, **EMA_ON)
    initial = [p.clone() for p in model.ema.parameters()]
    one_step(model)
    assert any(not torch.equal(a, b) for a, b in zip(initial, model.ema.parameters())), \
        "training_step must end with self.end_step(ctx), which moves the EMA"


@pytest.mark.parametrize("name", NAMES)
def test_ema_follows_the_sampling_network_and_serves_eval_samples(name):
    plain = build(name)
    assert not any(key.startswith("ema.") for key in plain.state_dict())   # no EMA, no new keys
    model = build(name, **EMA_ON)
    assert isinstance(model.ema, EMA) and "ema" not in model.training_only
    one_step(model)
    raw = model.train().sampling_network()                # training forward passes use the raw network
    assert raw is not model.ema
    averaged = [p.clone() for p in model.ema.parameters()]
    model.end_step(StepContext(5, torch.Generator(), total_steps=10))
    decay = min(0.9, 6 / 15)                               # the warm-up of the decay at step 5
    for new, old, target in zip(model.ema.parameters(), averaged, raw.parameters()):
        torch.testing.assert_close(new, old + (1 - decay) * (target.detach() - old))
    model.eval()
    assert model.sampling_network() is model.ema
    before = model.sample(4, torch.Generator().manual_seed(0))
    with torch.no_grad():
        for p in model.ema.parameters():
            p.mul_(0.5)
    assert not torch.allclose(before, model.sample(4, torch.Generator().manual_seed(0)))


# ---------------------------------------------------------------- checkpoints and runs
@pytest.mark.parametrize("fields", [{}, EMA_ON], ids=["plain", "ema"])
@pytest.mark.parametrize("name", NAMES)
def test_save_then_load_gives_identical_samples(name, fields, tmp_path):
    model = build(name, **fields)
    one_step(model)
    model.eval()
    save_checkpoint(tmp_path / "m.safetensors", model, {"step": 1})
    loaded = genlab.load(tmp_path / "m.safetensors")
    assert type(loaded) is type(model) and not loaded.training
    assert torch.equal(model.sample(7, torch.Generator().manual_seed(4)),
                       loaded.sample(7, torch.Generator().manual_seed(4)))


def final_weights(run) -> dict:
    _, tensors = read_checkpoint(runs.checkpoint_path(run))
    return {key: value for key, value in tensors.items() if key.startswith("model.")}


def stop_at(step: int):
    """A should_stop hook that stops a run when `step` steps are done (it is asked once per step)."""
    asked = []

    def should_stop():
        asked.append(1)
        return len(asked) > step
    return should_stop


@pytest.mark.parametrize("fields", [{}, SERVICES], ids=["plain", "services"])
@pytest.mark.parametrize("name", NAMES)
def test_n_steps_then_n_resumed_steps_equal_2n_steps_bit_exact(name, fields, tmp_path):
    config = tiny_config(name, model_fields=fields, steps=4, log_every=2, sample_every=2, checkpoint_every=2)
    straight, split = tmp_path / "straight", tmp_path / "split"
    genlab.train(config, straight)
    stopped = genlab.train(config, split, should_stop=stop_at(2))
    assert stopped["state"] == "stopped" and stopped["step"] == 2
    assert genlab.resume(split)["step"] == 4
    a, b = final_weights(straight), final_weights(split)
    assert a.keys() == b.keys() and any(key.startswith("model.ema.") for key in a) == bool(fields)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    timeless = lambda run: [{k: v for k, v in r.items() if k not in ("time", "images_per_s")}
                            for r in runs.read_metrics(run)]
    assert timeless(straight) == timeless(split) and [r["step"] for r in timeless(split)] == [2, 4]

@pytest.mark.parametrize("fields", [{}, EMA_ON], ids=["plain", "ema"])
@pytest.mark.parametrize("name", NAMES)
def test_export_drops_what_sampling_does_not_need_and_samples_the_same(name, fields, tmp_path):
    genlab.train(tiny_config(name, model_fields=fields, steps=2), tmp_path / "run")
    full = genlab.load(tmp_path / "run")
    exported = genlab.export_checkpoint(tmp_path / "run", tmp_path / "export.safetensors", half=False)
    small = genlab.load(exported)
    assert small.checkpoint_header["dropped"] == sorted(full.inference_drop())
    assert set(full.training_only) <= set(full.inference_drop())
    assert torch.equal(full.sample(6, torch.Generator().manual_seed(1)),
                       small.sample(6, torch.Generator().manual_seed(1)))
    for part in full.inference_drop():
        assert not any(key.startswith(part + ".") for key in small.state_dict())
    images = full.sample(6, torch.Generator().manual_seed(2))
    if isinstance(full, HasCodes):                       # the export still reads codes off images: Q(c | x)
        for key, value in full.infer_codes(images).items():
            assert torch.equal(value, small.infer_codes(images)[key]), key
    if isinstance(full, HasEncoder):                     # ... and still encodes them
        assert all(torch.equal(a, b) for a, b in zip(full.encode(images), small.encode(images)))


def test_the_toy_registers_only_inside_its_context():
    assert toy_model.NAME in MODELS                            # the autouse fixture registered it
    genlab.models.unregister_model(toy_model.NAME)
    assert toy_model.NAME not in MODELS
    with toy_model.registered():
        assert MODELS[toy_model.NAME] is toy_model.ToyFlow
    assert toy_model.NAME not in MODELS


def test_the_toy_sampling_cost_is_a_field_of_its_config():
    few, many = build(toy_model.NAME, sampling_steps=1).eval(), build(toy_model.NAME, sampling_steps=8).eval()
    assert not torch.allclose(few.sample(3, torch.Generator().manual_seed(0)),
                              many.sample(3, torch.Generator().manual_seed(0)))
