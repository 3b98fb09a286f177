"""DiffAugment: each transform does what the paper's code does, differentiably and reproducibly."""
import dataclasses

import pytest
import torch

import genlab
from genlab import runs
from genlab.checkpoint import read_checkpoint
from genlab.models import MODELS
from genlab.models.adversarial import AdversarialModel
from genlab.models.nn.augment import color, cutout, diff_augment, parse_policy, translation

from helpers import tiny_config
from test_contract import stop_at


def ramp(b=2, c=1, side=8):
    return torch.arange(b * c * side * side, dtype=torch.float32).reshape(b, c, side, side) + 1


def test_translation_shifts_whole_images_and_fills_with_zeros():
    x = ramp(b=16, side=16)
    y = translation(x, torch.Generator().manual_seed(0))
    for image, out in zip(x[:, 0], y[:, 0]):
        shifts = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                  if torch.equal(out, torch.nn.functional.pad(image, (2, 2, 2, 2))[2 - dy:18 - dy, 2 - dx:18 - dx])]
        assert len(shifts) == 1                                     # up to 1/8 of 16 = 2 pixels
    assert len({tuple(o.flatten()[:40].tolist()) for o in y[:, 0]}) > 3   # shifts differ per image


def test_cutout_zeroes_one_square_of_half_the_side():
    x = ramp(b=32, side=8)
    y = cutout(x, torch.Generator().manual_seed(1))
    zeros = (y == 0)[:, 0]                                          # (B, H, W)
    assert zeros.any(dim=(1, 2)).all()
    for mask in zeros:
        rows, cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
        assert mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()     # one rectangle
        assert len(rows) <= 4 and len(cols) <= 4
    assert (zeros.sum((1, 2)) == 16).any()                          # a whole 4x4 square where it fits
    assert torch.equal(y[~(y == 0)], x[~(y == 0)])


def test_color_keeps_shape_and_changes_each_image_differently():
    x = torch.rand(8, 3, 8, 8) * 2 - 1
    y = color(x, torch.Generator().manual_seed(2))
    assert y.shape == x.shape and not torch.allclose(y, x)
    assert len({round(float(d), 4) for d in (y - x).mean((1, 2, 3))}) == 8


def test_the_policy_is_differentiable_and_reproducible():
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    policy = parse_policy("color, translation,cutout")
    a = diff_augment(x, policy, torch.Generator().manual_seed(5))
    a.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    b = diff_augment(x, policy, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert torch.equal(diff_augment(x, (), torch.Generator()), x)


def test_unknown_policies_are_named():
    with pytest.raises(ValueError, match="unknown DiffAugment policy flip"):
        parse_policy("color,flip")
    assert parse_policy("") == ()


AUGMENTED = sorted(name for name, cls in MODELS.items()
                   if "diffaugment" in {field.name for field in dataclasses.fields(cls.config_class)})
POLICY = {"diffaugment": "color,translation,cutout"}


def test_every_gan_offers_diffaugment():
    assert AUGMENTED == sorted(n for n, c in MODELS.items() if issubclass(c, AdversarialModel)) and AUGMENTED


@pytest.mark.parametrize("name", AUGMENTED)
def test_diffaugment_runs_resume_bit_exact_and_change_training(name, tmp_path):
    def weights(run):
        return {k: v for k, v in read_checkpoint(runs.checkpoint_path(run))[1].items() if k.startswith("model.")}
    config = tiny_config(name, model_fields=POLICY, steps=4, checkpoint_every=2)
    genlab.train(config, tmp_path / "straight")
    genlab.train(config, tmp_path / "split", should_stop=stop_at(2))
    assert genlab.resume(tmp_path / "split")["step"] == 4
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)
    genlab.train(tiny_config(name, steps=4, checkpoint_every=2), tmp_path / "plain")
    plain = weights(tmp_path / "plain")
    assert any(not torch.equal(a[k], plain[k]) for k in a if k.startswith("model.discriminator."))
    assert all(torch.isfinite(v).all() for v in a.values() if v.is_floating_point())
