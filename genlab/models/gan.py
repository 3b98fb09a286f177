"""GAN (Goodfellow et al. 2014): an MLP generator and a maxout MLP discriminator with dropout."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import param
from .adversarial import AdversarialModel, GANOptions
from .base import LatentSpec
from .registry import register_model


@dataclass
class GANConfig(GANOptions):
    """Sizes follow the paper's MNIST model: G 1200-1200 ReLU, D 240-240 maxout with 5 pieces."""
    z_dim: int = param(100, "Size of the noise vector z.", low=1, high=1024)
    g_hidden: int = param(1200, "Width of the generator's two hidden layers.", low=8, high=8192)
    d_hidden: int = param(240, "Width of the discriminator's two maxout layers.", low=8, high=8192)
    maxout_pieces: int = param(5, "Linear pieces per maxout unit.", low=1, high=16)
    dropout: float = param(0.5, "Dropout on the discriminator's hidden layers.", low=0.0, high=0.9)
    image_size: int = param(28, "Image side in pixels (set from the data set).", low=8, high=128,
                            derived=True)


class Maxout(nn.Module):
    """Goodfellow 2013: the max over `pieces` linear maps."""
    def __init__(self, d_in: int, d_out: int, pieces: int):
        super().__init__()
        self.pieces = pieces
        self.linear = nn.Linear(d_in, d_out * pieces)

    def forward(self, x):                                   # (B, d_in)
        h = self.linear(x)                                  # (B, d_out * pieces)
        return h.view(x.shape[0], -1, self.pieces).amax(-1)  # (B, d_out)


class Generator(nn.Module):
    def __init__(self, c: GANConfig):
        super().__init__()
        self.shape = (c.channels, c.image_size, c.image_size)
        self.net = nn.Sequential(
            nn.Linear(c.z_dim, c.g_hidden), nn.ReLU(),
            nn.Linear(c.g_hidden, c.g_hidden), nn.ReLU(),
            nn.Linear(c.g_hidden, c.channels * c.image_size ** 2), nn.Tanh())

    def forward(self, z):                                    # (B, z_dim)
        return self.net(z).view(z.shape[0], *self.shape)     # (B, C, H, W)


class Discriminator(nn.Module):
    def __init__(self, c: GANConfig):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),                                                      # (B, C*H*W)
            Maxout(c.channels * c.image_size ** 2, c.d_hidden, c.maxout_pieces), nn.Dropout(c.dropout),
            Maxout(c.d_hidden, c.d_hidden, c.maxout_pieces), nn.Dropout(c.dropout),
            nn.Linear(c.d_hidden, 1))

    def forward(self, x):                                    # (B, C, H, W)
        return self.net(x).squeeze(1)                        # (B,) logits


@register_model("gan")
class GAN(AdversarialModel):
    """The original GAN: D and G play the minimax game of eq. 1."""
    config_class = GANConfig
    tiny = {"z_dim": 8, "g_hidden": 32, "d_hidden": 16, "maxout_pieces": 2}

    def __init__(self, config: GANConfig):
        super().__init__(config)
        self.generator = Generator(config)
        self.discriminator = Discriminator(config)
        self.attach_ema()

    def latent_spec(self) -> LatentSpec:
        return LatentSpec(z_dim=self.config.z_dim)

    def generate(self, z, **_) -> torch.Tensor:
        """x = G(z), in [-1, 1]."""
        return self.sampling_network()(z)

    def discriminate(self, x, y=None):
        return self.discriminator(x), None
