"""VAE (Kingma & Welling 2013): a convolutional Gaussian encoder q(z|x), a decoder p(x|z) and the
reparameterization trick. Bernoulli likelihood for 1-channel data (dynamically binarized, as in
the IWAE paper's MNIST), Gaussian with a learned per-channel scale for RGB. Losses are in nats
per image, with x scaled to [0, 1].
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError, param
from .base import ImageConfig, LatentModel, LatentSpec, StepContext
from .nn.conv import upsampling_plan
from .nn.optim import adam, optimizer_step
from .registry import register_model


@dataclass
class VAEConfig(ImageConfig):
    z_dim: int = param(32, "Size of the latent z.", low=1, high=1024)
    width: int = param(32, "Base channel width of encoder and decoder.", low=4, high=512)
    hidden: int = param(512, "Width of the fully connected layer.", low=8, high=8192)
    likelihood: str = param("auto", "p(x|z): auto is Bernoulli for 1 channel, Gaussian for RGB.",
                            choices=("auto", "bernoulli", "gaussian"))
    binarize: bool = param(True, "Bernoulli only: sample binary pixels each step (dynamic binarization).")
    lr: float = param(1e-3, "Adam learning rate.", low=1e-6, high=1.0, log=True)


class Encoder(nn.Module):
    """x (B, C, H, W) -> strided convs -> FC -> (mean, log-variance) of q(z|x), each (B, z_dim)."""
    def __init__(self, c: VAEConfig):
        super().__init__()
        start, stages = upsampling_plan(c.image_size)
        layers, ch_in, ch = [], c.channels, c.width
        for _ in range(stages):
            layers += [nn.Conv2d(ch_in, ch, 4, 2, 1), nn.ReLU(True)]
            ch_in, ch = ch, ch * 2
        layers += [nn.Flatten(), nn.Linear(ch_in * start * start, c.hidden), nn.ReLU(True),
                   nn.Linear(c.hidden, 2 * c.z_dim)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        mean, log_var = self.net(x).chunk(2, dim=1)
        return mean, log_var


class Decoder(nn.Module):
    """z (B, z_dim) -> FC -> (B, ch, s0, s0) -> fractionally strided convs -> (B, C, H, W) parameters."""
    def __init__(self, c: VAEConfig):
        super().__init__()
        start, stages = upsampling_plan(c.image_size)
        ch = c.width * 2 ** (stages - 1)
        self.start, self.ch = start, ch
        self.fc = nn.Sequential(nn.Linear(c.z_dim, c.hidden), nn.ReLU(True),
                                nn.Linear(c.hidden, ch * start * start), nn.ReLU(True))
        layers = []
        for _ in range(stages - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1), nn.ReLU(True)]
            ch //= 2
        layers.append(nn.ConvTranspose2d(ch, c.channels, 4, 2, 1))
        self.convs = nn.Sequential(*layers)

    def forward(self, z):
        return self.convs(self.fc(z).view(-1, self.ch, self.start, self.start))   # (B, C, H, W)


@register_model("vae")
class VAE(LatentModel):
    """Maximizes the ELBO, Kingma 2013 eq. 10: -KL(q(z|x) || p(z)) + E_q[log p(x|z)]."""
    config_class = VAEConfig
    tiny = {"z_dim": 4, "width": 8, "hidden": 32}
    training_only = ()              # the encoder stays: reconstructions, encoding an image, the IWAE bound
    ema_of = "decoder"
    ema_samples_only = False        # the trained decoder also scores the likelihood with the encoder

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        self.check_config()
        if config.likelihood == "auto":
            config.likelihood = "bernoulli" if config.channels == 1 else "gaussian"
        if config.likelihood == "bernoulli" and config.channels != 1:
            raise ConfigError("vae: the Bernoulli likelihood is for 1-channel data; use likelihood='gaussian'")
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.log_scale = nn.Parameter(torch.full((config.channels,), math.log(0.1)))   # Gaussian only
        self.attach_ema()

    def latent_spec(self) -> LatentSpec:
        return LatentSpec(z_dim=self.config.z_dim)

    def make_optimizers(self) -> dict:
        params = [p for name, p in self.named_parameters() if not name.startswith("ema.")]
        return {"vae": adam(params, self.config.lr, 0.9, 0.999)}

    def encode(self, x: torch.Tensor):
        """q(z|x) = N(mean, exp(log_var)) for x in [-1, 1]."""
        return self.encoder(x)

    def log_likelihood(self, x01: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        """log p(x|z) in nats per image, shape (B,), for x in [0, 1] (binary for Bernoulli)."""
        if self.config.likelihood == "bernoulli":
            return -F.binary_cross_entropy_with_logits(decoded, x01, reduction="none").flatten(1).sum(1)
        log_scale = self.log_scale[None, :, None, None]
        mean = (decoded + 1) / 2
        nll = 0.5 * ((x01 - mean) * torch.exp(-log_scale)).pow(2) + log_scale + 0.5 * math.log(2 * math.pi)
        return -nll.flatten(1).sum(1)

    def targets(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """x in [-1, 1] -> [0, 1], sampled to binary pixels when dynamic binarization is on."""
        x01 = ((x + 1) / 2).clamp(0, 1)
        if self.config.likelihood == "bernoulli" and self.config.binarize:
            return torch.bernoulli(x01, generator=generator)
        return x01

    def negative_elbo(self, x: torch.Tensor, x01: torch.Tensor, generator=None):
        """Kingma 2013 eq. 10 with one sample: returns (reconstruction NLL, KL), each (B,) in nats."""
        mean, log_var = self.encode(x)                                              # (B, z_dim) each
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        z = mean + torch.exp(0.5 * log_var) * eps                                    # reparameterization
        recon = -self.log_likelihood(x01, self.decoder(z))                          # (B,)
        kl = 0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var).sum(1)               # appendix B, (B,)
        return recon, kl

    def training_step(self, batches, optimizers: dict, ctx: StepContext) -> dict:
        """One Adam step on the negative ELBO averaged over the batch (lr schedule and clipping from the config)."""
        x, _ = batches()                                                         # (B, C, H, W)
        x01 = self.targets(x, ctx.rng)
        encoder_input = x01 * 2 - 1 if self.config.likelihood == "bernoulli" else x
        recon, kl = self.negative_elbo(encoder_input, x01, ctx.rng)
        loss = (recon + kl).mean()
        optimizer_step(optimizers["vae"], loss, ctx, self.config)
        self.end_step(ctx)
        return {"loss/total": loss.detach(), "loss/recon": recon.mean().detach(),
                "loss/kl": kl.mean().detach()}

    @torch.no_grad()
    def nll(self, x01: torch.Tensor, rng: torch.Generator | None = None, k: int = 1,
            chunk: int = 250) -> torch.Tensor:
        """-log p(x) bounded by Burda 2015 eq. 8: -log (1/k) sum_i p(x, z_i) / q(z_i | x); nats per image, (B,).

        k = 1 is the ELBO's one-sample estimate; the bound tightens with k towards -log p(x). x01 is in
        [0, 1] (binary for the Bernoulli likelihood). The trained encoder and decoder are used as the pair
        they are (not the decoder's EMA, which only samples). Samples are drawn `chunk` at a time and combined
        with a running logsumexp, in float64.
        """
        x = x01 * 2 - 1                                                            # the encoder sees [-1, 1]
        mean, log_var = self.encode(x)                                             # (B, Z) each
        std = torch.exp(0.5 * log_var)
        batch = x01.shape[0]
        total = torch.full((batch,), -math.inf, dtype=torch.float64, device=x01.device)
        log_normal = -0.5 * math.log(2 * math.pi)
        for start in range(0, k, chunk):
            n = min(chunk, k - start)
            eps = torch.randn((n,) + tuple(mean.shape), generator=rng, device=mean.device)   # (n, B, Z)
            z = mean + std * eps
            log_q = (log_normal - 0.5 * log_var - 0.5 * eps.pow(2)).sum(-1)        # (n, B)
            log_prior = (log_normal - 0.5 * z.pow(2)).sum(-1)                      # (n, B)
            decoded = self.decoder(z.reshape(n * batch, -1))                       # (n*B, C, H, W)
            target = x01.expand(n, *x01.shape).reshape(n * batch, *x01.shape[1:])
            log_lik = self.log_likelihood(target, decoded).view(n, batch)          # (n, B)
            log_w = (log_lik + log_prior - log_q).double()
            total = torch.logaddexp(total, torch.logsumexp(log_w, dim=0))
        return math.log(k) - total

    def generate(self, z, **_) -> torch.Tensor:
        """The decoder's mean image E[x|z], in [-1, 1] (the decoder's EMA in eval mode, if kept)."""
        decoded = self.sampling_network()(z)
        if self.config.likelihood == "bernoulli":
            return torch.sigmoid(decoded) * 2 - 1
        return decoded.clamp(-1, 1)
