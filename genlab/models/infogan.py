"""InfoGAN (Chen et al. 2016): G(z, c) with categorical and continuous codes c, and a Q head that
shares D's body and recovers c from G(z, c). The variational lower bound L_I(G, Q) of the mutual
information I(c; G(z, c)) (eq. 4) is maximized by G and by D/Q (eq. 5).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import param
from .adversarial import AdversarialModel, GANOptions
from .base import LatentSpec
from .nn.conv import D_NORMS, d_norm_layer, init_dcgan_weights, norm1d, resolve_d_norm, upsampling_plan
from .registry import register_model


@dataclass
class InfoGANConfig(GANOptions):
    """Defaults follow the paper's MNIST setup (appendix C.1) and its code (openai/InfoGAN,
    run_mnist_exp.py): z 62 ~ U[-1, 1], one 10-way code, 2 continuous codes whose Q is a
    unit-variance Gaussian, lambda 1 for all codes, lr 1e-3 for G and 2e-4 for D (and, a training
    option, batch 128)."""
    z_dim: int = param(62, "Size of the incompressible noise z.", low=1, high=1024)
    z_prior: str = param("uniform", "Prior of z: U[-1, 1] as in the paper's code, or N(0, I).",
                         choices=("uniform", "normal"))
    categorical_codes: int = param(1, "Number of categorical codes.", low=0, high=4)
    categories: int = param(10, "Values per categorical code.", low=2, high=100)
    continuous_codes: int = param(2, "Number of continuous codes, uniform in [-1, 1].", low=0, high=16)
    lambda_cat: float = param(1.0, "Weight of the categorical mutual-information term.", low=0.0, high=100.0)
    lambda_cont: float = param(1.0, "Weight of the continuous mutual-information term.", low=0.0, high=100.0)
    cont_std: str = param("fixed", "Q's Gaussian for continuous codes: unit std (the paper's MNIST code; "
                          "bounded, so it cannot drown the categorical term) or a learned std.",
                          choices=("fixed", "learned"))
    g_channels: int = param(64, "Generator base width.", low=4, high=512)
    d_channels: int = param(64, "Discriminator base width.", low=4, high=512)
    fc_width: int = param(1024, "Width of the fully connected layers of G and D.", low=16, high=8192)
    q_width: int = param(128, "Width of Q's hidden layer.", low=8, high=4096)
    d_norm: str = param("auto", "Discriminator normalization; auto is BatchNorm as in the paper, "
                        "or per-sample LayerNorm when R1 is on.", choices=D_NORMS)
    lr_g: float = param(1e-3, "Generator learning rate (Adam); the paper uses 1e-3.", low=1e-6, high=1.0, log=True)


class Generator(nn.Module):
    """(z, c) -> FC 1024 -> FC s0*s0*ch -> fractionally strided convs -> tanh."""
    def __init__(self, c: InfoGANConfig, in_dim: int):
        super().__init__()
        start, stages = upsampling_plan(c.image_size)
        ch = c.g_channels * 2 ** (stages - 1)
        self.start, self.ch = start, ch
        self.fc = nn.Sequential(
            nn.Linear(in_dim, c.fc_width), nn.BatchNorm1d(c.fc_width), nn.ReLU(True),
            nn.Linear(c.fc_width, ch * start * start), nn.BatchNorm1d(ch * start * start), nn.ReLU(True))
        layers = []
        for _ in range(stages - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, c.channels, 4, 2, 1), nn.Tanh()]
        self.convs = nn.Sequential(*layers)

    def forward(self, inputs):                                         # (B, z + codes)
        h = self.fc(inputs).view(-1, self.ch, self.start, self.start)  # (B, 128, 7, 7) at 28 px
        return self.convs(h)                                           # (B, C, H, W)


class DiscriminatorQ(nn.Module):
    """A shared body with two heads: D's logit and Q's code parameters."""
    def __init__(self, c: InfoGANConfig, q_outputs: int):
        super().__init__()
        start, stages = upsampling_plan(c.image_size)
        norm = resolve_d_norm(c.d_norm, c.r1_gamma)
        ch = c.d_channels
        layers = [nn.Conv2d(c.channels, ch, 4, 2, 1), nn.LeakyReLU(0.1, True)]
        for _ in range(stages - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1), d_norm_layer(norm, ch * 2), nn.LeakyReLU(0.1, True)]
            ch *= 2
        layers += [nn.Flatten(), nn.Linear(ch * start * start, c.fc_width),
                   norm1d(norm, c.fc_width), nn.LeakyReLU(0.1, True)]
        self.body = nn.Sequential(*layers)                             # (B, fc_width)
        self.d_head = nn.Linear(c.fc_width, 1)
        self.q_head = nn.Sequential(nn.Linear(c.fc_width, c.q_width), norm1d(norm, c.q_width),
                                    nn.LeakyReLU(0.1, True), nn.Linear(c.q_width, q_outputs))

    def forward(self, x):
        h = self.body(x)
        return self.d_head(h).squeeze(1), self.q_head(h)               # (B,), (B, q_outputs)


@register_model("infogan")
class InfoGAN(AdversarialModel):
    """G(z, c), D(x) and Q(c | x) sharing D's body."""
    config_class = InfoGANConfig
    tiny = {"z_dim": 8, "g_channels": 8, "d_channels": 8, "fc_width": 32, "q_width": 16}
    training_only = ()          # D's body carries Q(c | x): an export keeps it to read codes off images

    def __init__(self, config: InfoGANConfig):
        super().__init__(config)
        self.check_config()
        c = config
        n_cat = c.categorical_codes * c.categories
        self.generator = Generator(c, c.z_dim + n_cat + c.continuous_codes)
        self.discriminator = DiscriminatorQ(c, n_cat + self.cont_params() * c.continuous_codes)
        self.apply(init_dcgan_weights)
        self.warn_r1_with_batchnorm()
        self.attach_ema()

    def cont_params(self) -> int:
        """Q's outputs per continuous code: the mean, and the log-std when it is learned."""
        return 2 if self.config.cont_std == "learned" else 1

    def latent_spec(self) -> LatentSpec:
        c = self.config
        return LatentSpec(z_dim=c.z_dim, categorical=[c.categories] * c.categorical_codes,
                          continuous=c.continuous_codes, z_prior=c.z_prior)

    def generator_input(self, z, cat=None, cont=None) -> torch.Tensor:
        c = self.config
        parts = [z]                                                              # (B, z_dim)
        if c.categorical_codes:
            parts.append(F.one_hot(cat, c.categories).to(z.dtype).flatten(1))   # (B, n_cat * K)
        if c.continuous_codes:
            parts.append(cont.to(z.dtype))                                       # (B, n_cont)
        return torch.cat(parts, dim=1)

    def generate(self, z, cat=None, cont=None, **_) -> torch.Tensor:
        """x = G(z, c), in [-1, 1]."""
        return self.sampling_network()(self.generator_input(z, cat, cont))

    def discriminate(self, x, y=None):
        return self.discriminator(x)

    def q_posterior(self, q_out: torch.Tensor):
        """Split Q's outputs: categorical logits (B, n_cat, K), Gaussian mean and log-std (B, n_cont)."""
        c = self.config
        n_cat = c.categorical_codes * c.categories
        logits = q_out[:, :n_cat].view(-1, c.categorical_codes, c.categories)
        mean = q_out[:, n_cat:n_cat + c.continuous_codes]
        if c.cont_std == "learned":
            log_std = q_out[:, n_cat + c.continuous_codes:].clamp(-5.0, 2.0)
        else:
            log_std = torch.zeros_like(mean)                                     # std 1
        return logits, mean, log_std

    def infer_codes(self, x: torch.Tensor) -> dict:
        """Q's best guess of the codes behind images x: argmax category and the Gaussian mean."""
        logits, mean, _ = self.q_posterior(self.discriminator(x)[1])
        return {"cat": logits.argmax(-1), "cat_logits": logits, "cont": mean}

    def aux_loss(self, q_out, latents):
        """Chen 2016 eq. 5: lambda * L_I with L_I = E[log Q(c | G(z, c))] + H(c); returns -lambda*L_I."""
        c = self.config
        logits, mean, log_std = self.q_posterior(q_out)
        logs, loss = {}, 0.0
        if c.categorical_codes:
            nll_cat = F.cross_entropy(logits.reshape(-1, c.categories), latents["cat"].reshape(-1),
                                      reduction="sum") / logits.shape[0]                 # nats per image
            loss = loss + c.lambda_cat * nll_cat
            logs["info/mi_cat"] = c.categorical_codes * math.log(c.categories) - nll_cat
            logs["info/cat_acc"] = (logits.argmax(-1) == latents["cat"]).float().mean()
        if c.continuous_codes:
            z = (latents["cont"] - mean) * torch.exp(-log_std)
            nll_cont = (log_std + 0.5 * z.pow(2) + 0.5 * math.log(2 * math.pi)).sum(1).mean()
            loss = loss + c.lambda_cont * nll_cont
            logs["info/mi_cont"] = c.continuous_codes * math.log(2.0) - nll_cont   # H(U[-1,1]) = log 2
        logs["loss/info"] = loss.detach() if torch.is_tensor(loss) else torch.tensor(loss)
        return (loss if torch.is_tensor(loss) else None), logs
