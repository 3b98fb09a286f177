"""The losses against hand computations: GAN losses, R1, InfoGAN's mutual-information term, the ELBO."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from genlab.models import StepContext, build_model
from genlab.models.adversarial import discriminator_loss, generator_loss, r1_penalty

from helpers import TINY_MODEL


def test_gan_losses_match_goodfellow_eq1():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    d_real, d_fake = torch.sigmoid(real), torch.sigmoid(fake)
    expected_d = (-torch.log(d_real)).mean() + (-torch.log(1 - d_fake)).mean()
    assert torch.allclose(discriminator_loss(real, fake, "nonsaturating"), expected_d)
    assert torch.allclose(generator_loss(fake, "minimax"), torch.log(1 - d_fake).mean())
    assert torch.allclose(generator_loss(fake, "nonsaturating"), (-torch.log(d_fake)).mean())
    assert torch.allclose(discriminator_loss(real, fake, "hinge"),
                          F.relu(1 - real).mean() + F.relu(1 + fake).mean())
    assert torch.allclose(generator_loss(fake, "hinge"), -fake.mean())


def test_r1_penalty_matches_hand_computed_gradient():
    # D(x) = sum(a * x^2) per sample: grad_x D = 2 a x, so ||grad||^2 = sum(4 a^2 x^2).
    a = torch.tensor([[0.5, -1.0], [2.0, 0.25]])
    x = torch.randn(3, 1, 2, 2, requires_grad=True)
    logits = (a * x.pow(2)).flatten(1).sum(1)                      # (3,)
    expected = (4 * a.pow(2) * x.detach().pow(2)).flatten(1).sum(1)
    penalty = r1_penalty(logits, x)
    assert penalty.shape == (3,)
    assert torch.allclose(penalty, expected, atol=1e-6)
    penalty.sum().backward()                                         # create_graph: differentiable
    assert torch.allclose(x.grad, 8 * a.pow(2) * x.detach(), atol=1e-5)


def test_r1_penalty_is_per_sample_with_layer_norm_discriminator():
    model = build_model("dcgan", dict(TINY_MODEL["dcgan"], r1_gamma=1.0))
    x = torch.randn(4, 1, 28, 28, requires_grad=True)
    full = r1_penalty(model.discriminator(x), x)
    x0 = x[:1].detach().clone().requires_grad_(True)
    alone = r1_penalty(model.discriminator(x0), x0)
    assert torch.allclose(full[0], alone[0], rtol=1e-4)             # no coupling across the batch


def test_infogan_mutual_information_term_matches_hand_computation():
    model = build_model("infogan", dict(TINY_MODEL["infogan"], cont_std="learned"))
    c = model.config
    q_out = torch.randn(5, c.categories + 2 * c.continuous_codes)
    latents = {"cat": torch.randint(10, (5, 1)), "cont": torch.rand(5, 2) * 2 - 1}
    loss, logs = model.aux_loss(q_out, latents)

    logits = q_out[:, :10]
    log_q_cat = torch.log_softmax(logits, 1).gather(1, latents["cat"]).squeeze(1)      # (5,)
    mean, log_std = q_out[:, 10:12], q_out[:, 12:14].clamp(-5, 2)
    std = log_std.exp()
    log_q_cont = (-(latents["cont"] - mean) ** 2 / (2 * std ** 2) - torch.log(std * math.sqrt(2 * math.pi))).sum(1)
    expected_loss = -c.lambda_cat * log_q_cat.mean() - c.lambda_cont * log_q_cont.mean()
    assert torch.allclose(loss, expected_loss, atol=1e-5)
    # L_I = E[log Q(c|x)] + H(c): H(cat) = log 10, H(U[-1, 1]) = log 2 per continuous code
    assert torch.allclose(logs["info/mi_cat"], math.log(10) + log_q_cat.mean(), atol=1e-5)
    assert torch.allclose(logs["info/mi_cont"], 2 * math.log(2) + log_q_cont.mean(), atol=1e-5)


def test_infogan_fixed_std_term_is_a_unit_gaussian():
    model = build_model("infogan", TINY_MODEL["infogan"])             # cont_std="fixed", the default
    c = model.config
    q_out = torch.randn(5, c.categories + c.continuous_codes)         # no log-std outputs
    latents = {"cat": torch.randint(10, (5, 1)), "cont": torch.rand(5, 2) * 2 - 1}
    loss, logs = model.aux_loss(q_out, latents)
    log_q_cat = torch.log_softmax(q_out[:, :10], 1).gather(1, latents["cat"]).squeeze(1)
    log_q_cont = (-(latents["cont"] - q_out[:, 10:12]) ** 2 / 2 - 0.5 * math.log(2 * math.pi)).sum(1)
    expected = -c.lambda_cat * log_q_cat.mean() - c.lambda_cont * log_q_cont.mean()
    assert torch.allclose(loss, expected, atol=1e-5)
    assert model.discriminator.q_head[-1].out_features == 12 and model.latent_spec().z_prior == "uniform"


def test_infogan_mi_bound_reaches_entropy_when_q_is_certain():
    model = build_model("infogan", TINY_MODEL["infogan"])
    cat = torch.randint(10, (6, 1))
    q_out = torch.zeros(6, 12)
    q_out[:, :10] = F.one_hot(cat[:, 0], 10) * 50.0
    _, logs = model.aux_loss(q_out, {"cat": cat, "cont": torch.zeros(6, 2)})
    assert abs(logs["info/mi_cat"].item() - math.log(10)) < 1e-4
    assert logs["info/cat_acc"].item() == 1.0


def test_vae_negative_elbo_matches_closed_forms():
    torch.manual_seed(0)
    model = build_model("vae", TINY_MODEL["vae"])
    x01 = torch.bernoulli(torch.full((3, 1, 28, 28), 0.3))
    x = x01 * 2 - 1
    gen = torch.Generator().manual_seed(5)
    recon, kl = model.negative_elbo(x, x01, gen)
    mean, log_var = model.encode(x)
    expected_kl = -0.5 * (1 + log_var - mean.pow(2) - log_var.exp()).sum(1)    # Kingma 2013 appendix B
    assert torch.allclose(kl, expected_kl, atol=1e-5)
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(5))
    probs = torch.sigmoid(model.decoder(mean + (0.5 * log_var).exp() * eps))
    expected_recon = -(x01 * probs.log() + (1 - x01) * (1 - probs).log()).flatten(1).sum(1)
    assert torch.allclose(recon, expected_recon, rtol=1e-4)


@pytest.mark.parametrize("d_steps", [1, 2])
def test_reused_fakes_g_loss_matches_hand_computation_from_the_d_steps_batch(d_steps):
    """With reuse_fakes the G step scores the last D step's G(z) with the updated D; G runs once."""
    torch.manual_seed(0)
    model = build_model("dcgan", dict(TINY_MODEL["dcgan"], d_steps=d_steps, reuse_fakes=True))
    generator_before = copy.deepcopy(model.generator)
    real = torch.rand(6, 1, 28, 28) * 2 - 1                                   # (6, 1, 28, 28)
    calls = []
    model.generator.register_forward_hook(lambda *_: calls.append(1))
    logs = model.training_step(lambda: (real.clone(), torch.zeros(6, dtype=torch.long)),
                               model.make_optimizers(), StepContext(0, torch.Generator().manual_seed(1)))

    rng = torch.Generator().manual_seed(1)
    z = [torch.randn(6, 8, generator=rng) for _ in range(d_steps)][-1]      # the last D step's z
    with torch.no_grad():
        fake = generator_before(z)                                           # G before its update
        expected = F.softplus(-model.discriminator(fake)).mean()            # -log D(G(z)), D after its update
    assert len(calls) == d_steps                                             # no second G forward
    assert torch.allclose(logs["loss/g"], expected, atol=1e-6)


def test_fresh_fakes_draw_a_new_batch_for_the_g_step():
    torch.manual_seed(0)
    model = build_model("dcgan", dict(TINY_MODEL["dcgan"], reuse_fakes=False))
    generator_before = copy.deepcopy(model.generator)
    real = torch.rand(6, 1, 28, 28) * 2 - 1
    logs = model.training_step(lambda: (real.clone(), torch.zeros(6, dtype=torch.long)),
                               model.make_optimizers(), StepContext(0, torch.Generator().manual_seed(1)))
    rng = torch.Generator().manual_seed(1)
    z_d, z_g = torch.randn(6, 8, generator=rng), torch.randn(6, 8, generator=rng)
    with torch.no_grad():
        scored = {name: F.softplus(-model.discriminator(generator_before(z))).mean() for name, z in
                  (("d", z_d), ("g", z_g))}
    assert torch.allclose(logs["loss/g"], scored["g"], atol=1e-6)
    assert not torch.allclose(logs["loss/g"], scored["d"], atol=1e-6)
