"""What every GAN shares: the losses, the R1 penalty and the D-step / G-step training step.

A GAN model subclasses `AdversarialModel` and provides `generator`, `discriminator`,
`generate(**latents)` (through `self.sampling_network()`, the generator or its EMA) and
`discriminate(x, y) -> (logits, aux)`, and calls `self.attach_ema()` at the end of `__init__`.
InfoGAN adds `aux_loss`; the cGAN's AC-GAN term adds it and `real_aux_loss`. An inference export
drops the discriminator (`training_only`), except InfoGAN's, whose body carries Q.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import param
from .base import ImageConfig, LatentModel, StepContext
from .nn.augment import diff_augment, parse_policy
from .nn.optim import adam, optimizer_step

GAN_LOSSES = ("nonsaturating", "minimax", "hinge")
DIFFAUGMENT_POLICIES = ("", "color", "translation", "cutout", "color,translation", "translation,cutout",
                        "color,cutout", "color,translation,cutout")


@dataclass
class GANOptions(ImageConfig):
    """Options every GAN has: the loss, R1, optimizers and D steps per G step."""
    loss: str = param("nonsaturating", "Adversarial loss: Goodfellow's minimax or non-saturating "
                      "generator loss, or the hinge loss.", choices=GAN_LOSSES)
    r1_gamma: float = param(0.0, "Weight gamma of the zero-centered R1 penalty on real data "
                            "(Mescheder 2018); 0 turns it off.", low=0.0, high=1000.0)
    lr_g: float = param(2e-4, "Generator learning rate (Adam).", low=1e-6, high=1.0, log=True)
    lr_d: float = param(2e-4, "Discriminator learning rate (Adam).", low=1e-6, high=1.0, log=True)
    beta1: float = param(0.5, "Adam beta1.", low=0.0, high=0.999)
    beta2: float = param(0.999, "Adam beta2.", low=0.0, high=0.9999)
    d_steps: int = param(1, "Discriminator steps per generator step (Goodfellow's k).", low=1, high=10)
    reuse_fakes: bool = param(True, "The G step reuses the last D step's fake batch G(z) (computed once, "
                              "with its graph kept), as the PyTorch DCGAN example does, instead of "
                              "drawing new z and running G again; same algorithm, one G forward less.")
    diffaugment: str = param("", "DiffAugment (Zhao et al. 2020) for small data sets: the same kind of random "
                             "differentiable transform on real and fake images before D, in both steps; "
                             "'color,translation,cutout' is the paper's choice, empty turns it off.",
                             choices=DIFFAUGMENT_POLICIES)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Goodfellow 2014 eq. 1, D side: -log D(x) - log(1 - D(G(z))); or the hinge loss."""
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    # -log sigmoid(l) = softplus(-l);  -log(1 - sigmoid(l)) = softplus(l)
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Goodfellow 2014 eq. 1, G side: minimax log(1 - D(G(z))), or non-saturating -log D(G(z)), or hinge."""
    if kind == "minimax":
        return -F.softplus(fake_logits).mean()          # log(1 - sigmoid(l)) = -softplus(l)
    if kind == "nonsaturating":
        return F.softplus(-fake_logits).mean()
    return -fake_logits.mean()                          # hinge (Lim & Ye 2017)


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor, create_graph: bool = True) -> torch.Tensor:
    """Mescheder 2018 eq. 9: per-sample ||grad_x D(x)||^2 on real data, shape (B,); gamma/2 is the caller's."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=create_graph, retain_graph=True)
    return grad.pow(2).flatten(1).sum(1)


class AdversarialModel(LatentModel):
    """A generator and a discriminator trained by alternating D and G steps."""
    generator: nn.Module
    discriminator: nn.Module
    training_only = ("discriminator",)
    ema_of = "generator"
    phases = ("D", "G")                               # a manual step may run one alone

    def discriminate(self, x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, object]:
        """D's logits, shape (B,), and auxiliary outputs (InfoGAN's Q head) or None."""
        raise NotImplementedError

    def aux_loss(self, aux, latents: dict) -> tuple[torch.Tensor | None, dict]:
        """An extra loss on D's auxiliary output for fakes, added to both D and G steps (InfoGAN's
        mutual information term, AC-GAN's class term)."""
        return None, {}

    def real_aux_loss(self, aux, y: torch.Tensor) -> tuple[torch.Tensor | None, dict]:
        """An extra loss on D's auxiliary output for real images, added to the D step (AC-GAN's class term)."""
        return None, {}

    def make_optimizers(self) -> dict:
        c = self.config
        return {"generator": adam(self.generator.parameters(), c.lr_g, c.beta1, c.beta2),
                "discriminator": adam(self.discriminator.parameters(), c.lr_d, c.beta1, c.beta2)}

    def uses_batchnorm_in_d(self) -> bool:
        return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.discriminator.modules())

    def warn_r1_with_batchnorm(self):
        if self.config.r1_gamma > 0 and self.uses_batchnorm_in_d():
            warnings.warn(f"{self.name}: R1 is a per-sample gradient penalty but the discriminator "
                          "uses BatchNorm, which mixes samples; use d_norm='layer' or 'none'.",
                          stacklevel=3)

    def training_step(self, batches, optimizers: dict, ctx: StepContext) -> dict:
        """Goodfellow 2014 Algorithm 1: `d_steps` D updates, then one G update; returns detached scalars.

        With `reuse_fakes` the last D step's G(z) is computed once with its graph: D sees
        fake.detach(), the G step backpropagates through the same fake (the canonical DCGAN loop).
        Real and fake batches go through D separately (separate BatchNorm batches, as in DCGAN).
        `ctx.phases` ("D",) or ("G",) runs one phase alone (a manual step): the other network, its
        BatchNorm statistics and the EMA (which follows G steps) stay exactly as they were.
        """
        c = self.config
        opt_g, opt_d = optimizers["generator"], optimizers["discriminator"]
        phases = self.phases if ctx.phases is None else ctx.phases
        train_d, train_g = "D" in phases, "G" in phases
        r1_on = c.r1_gamma > 0
        measure_r1 = r1_on or ctx.diagnostics        # R1's gradient norm costs a double backward
        logs, fake = {}, None
        policy = parse_policy(c.diffaugment)

        def augment(x: torch.Tensor) -> torch.Tensor:           # T(x), drawn anew for every batch
            return diff_augment(x, policy, ctx.rng) if policy else x

        # ---------------- D step(s): maximize log D(x) + log(1 - D(G(z))) ----------------
        if train_d:
            self.discriminator.requires_grad_(True)
            with kept_buffers(self.generator, keep=not train_g):       # a D-only step leaves G as it was
                for d_step in range(c.d_steps):
                    real, y = batches()                              # (B, C, H, W) in [-1, 1], (B,)
                    latents = self.sample_latents(real.shape[0], ctx.rng)
                    keep_graph = train_g and c.reuse_fakes and d_step == c.d_steps - 1
                    with torch.set_grad_enabled(keep_graph):
                        fake = self.generate(**latents)              # (B, C, H, W)
                    real.requires_grad_(measure_r1)
                    real_logits, real_aux = self.discriminate(augment(real), y)   # (B,)  R1 through T
                    fake_logits, fake_aux = self.discriminate(augment(fake.detach()), latents.get("y"))
                    loss_d = discriminator_loss(real_logits, fake_logits, c.loss)
                    if measure_r1:
                        grad_sq = r1_penalty(real_logits, real, create_graph=r1_on)   # (B,)
                        if r1_on:
                            loss_d = loss_d + 0.5 * c.r1_gamma * grad_sq.mean()
                    info, _ = self.aux_loss(fake_aux, latents)
                    if info is not None:
                        loss_d = loss_d + info
                    real_info, real_info_logs = self.real_aux_loss(real_aux, y)
                    if real_info is not None:
                        loss_d = loss_d + real_info
                    optimizer_step(opt_d, loss_d, ctx, c)

            logs.update({"loss/d": loss_d.detach(),
                         "d/real": torch.sigmoid(real_logits.detach()).mean(),
                         "d/fake": torch.sigmoid(fake_logits.detach()).mean()})
            if measure_r1:
                logs["r1/grad_norm"] = grad_sq.detach().sqrt().mean()
            logs.update({k: v.detach() for k, v in real_info_logs.items()})
        if not train_g:
            return logs

        # ---------------- G step: minimize the generator loss (D frozen) ----------------
        self.discriminator.requires_grad_(False)     # no D weight gradients in the G backward
        if fake is None or not c.reuse_fakes:
            batch_size = real.shape[0] if fake is not None else batches()[0].shape[0]   # a G-only step: B
            latents = self.sample_latents(batch_size, ctx.rng)
            fake = self.generate(**latents)                          # (B, C, H, W)
        with kept_buffers(self.discriminator, keep=not train_d):     # a G-only step leaves D as it was
            fake_logits, fake_aux = self.discriminate(augment(fake), latents.get("y"))
            loss_g = generator_loss(fake_logits, c.loss)
            info, info_logs = self.aux_loss(fake_aux, latents)
            if info is not None:
                loss_g = loss_g + info
            optimizer_step(opt_g, loss_g, ctx, c)                    # (BatchNorm's backward reads them)
        self.discriminator.requires_grad_(True)

        logs["loss/g"] = loss_g.detach()
        logs.update({k: v.detach() for k, v in info_logs.items()})
        self.end_step(ctx)
        return logs


@contextlib.contextmanager
def kept_buffers(network: nn.Module, keep: bool):
    """With keep=True, `network`'s buffers (BatchNorm running statistics) are restored on exit, so a
    forward pass in training mode leaves the network exactly as it was."""
    saved = [buffer.clone() for buffer in network.buffers()] if keep else []
    try:
        yield
    finally:
        for buffer, value in zip(network.buffers() if keep else (), saved):
            buffer.copy_(value)
