"""Conditional GAN (Mirza & Osindero 2014), convolutional: the class y is fed to both G and D.

As in the paper, y enters as a one-hot vector joined to each network's input: to z for G,
and to the image for D (as 10 constant feature maps). The networks are DCGAN's.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .adversarial import AdversarialModel
from .base import LatentSpec, init_dcgan_weights, register_model
from .dcgan import DCGANConfig, Discriminator, Generator, resolve_d_norm


@dataclass
class CGANConfig(DCGANConfig):
    """DCGAN's fields; num_classes (from the data set) sets the size of the one-hot y."""


@register_model("cgan")
class CGAN(AdversarialModel):
    """G(z, y) and D(x, y) (Mirza 2014 eq. 2)."""
    config_class = CGANConfig

    def __init__(self, config: CGANConfig):
        super().__init__(config)
        self.check_config()
        c = config
        self.generator = Generator(c.z_dim, c.channels, c.image_size, c.g_channels,
                                   in_extra=c.num_classes)
        self.discriminator = Discriminator(c.channels, c.image_size, c.d_channels,
                                           resolve_d_norm(c.d_norm, c.r1_gamma), in_extra=c.num_classes)
        self.apply(init_dcgan_weights)
        self.warn_r1_with_batchnorm()

    def latent_spec(self) -> LatentSpec:
        return LatentSpec(z_dim=self.config.z_dim, num_classes=self.config.num_classes)

    def generate(self, z, y, **_) -> torch.Tensor:
        """x = G(z | y), in [-1, 1]."""
        y_onehot = F.one_hot(y, self.config.num_classes).to(z.dtype)                # (B, K)
        return self.generator(torch.cat([z, y_onehot], dim=1))                       # (B, C, H, W)

    def discriminate(self, x, y):
        """D(x | y): the one-hot y as K constant maps beside the image channels."""
        b, _, h, w = x.shape
        y_maps = F.one_hot(y, self.config.num_classes).to(x.dtype)[:, :, None, None].expand(b, -1, h, w)
        return self.discriminator(torch.cat([x, y_maps], dim=1)), None             # (B,)
