"""DCGAN (Radford et al. 2015): all-convolutional G and D with BatchNorm, ReLU / LeakyReLU(0.2)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import param
from .adversarial import AdversarialModel, GANOptions
from .base import LatentSpec
from .nn.conv import D_NORMS, d_norm_layer, init_dcgan_weights, resolve_d_norm, upsampling_plan
from .registry import register_model


@dataclass
class DCGANConfig(GANOptions):
    """Defaults follow the paper and the PyTorch DCGAN example: z 100, 64 base channels."""
    z_dim: int = param(100, "Size of the noise vector z.", low=1, high=1024)
    g_channels: int = param(64, "Generator base width (ngf).", low=4, high=512)
    d_channels: int = param(64, "Discriminator base width (ndf).", low=4, high=512)
    g_extra_layers: int = param(0, "Extra 3x3 stride-1 conv layers (BatchNorm, ReLU) in G right after the "
                                "projection of z, at the lowest resolution: a deeper map from z to shapes "
                                "(Arjovsky's DCGAN code has n_extra_layers, at the highest resolution).",
                                low=0, high=4)
    d_extra_layers: int = param(0, "Extra 3x3 stride-1 conv layers (norm, LeakyReLU) in D at its lowest "
                                "resolution, before the logit: each lets D's last features see two cells "
                                "further (at 28x28 from 10 px to 18, 26, ...), so D judges whole shapes.",
                                low=0, high=4)
    d_norm: str = param("auto", "Discriminator normalization; auto is BatchNorm as in the paper, "
                        "or per-sample LayerNorm when R1 is on.", choices=D_NORMS)


class Generator(nn.Module):
    """z (B, z_dim) -> project to (B, g*2^(k-1), s0, s0) [-> extra 3x3 convs] -> k fractionally strided
    convs -> tanh."""
    def __init__(self, z_dim: int, channels: int, image_size: int, width: int, in_extra: int = 0,
                 extra_layers: int = 0, norm=nn.BatchNorm2d):
        super().__init__()
        start, stages = upsampling_plan(image_size)
        ch = width * 2 ** (stages - 1)
        layers = [nn.ConvTranspose2d(z_dim + in_extra, ch, start, 1, 0, bias=False),   # (B, ch, s0, s0)
                  norm(ch), nn.ReLU(True)]
        for _ in range(extra_layers):
            layers += [nn.Conv2d(ch, ch, 3, 1, 1, bias=False),                        # (B, ch, s0, s0)
                       norm(ch), nn.ReLU(True)]
        for _ in range(stages - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False),          # side x2, ch / 2
                       norm(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, channels, 4, 2, 1, bias=False), nn.Tanh()]  # (B, C, H, W)
        self.net = nn.Sequential(*layers)

    def forward(self, z):                                     # (B, z_dim [+ extra])
        return self.net(z[:, :, None, None])                  # (B, C, H, W)


class Discriminator(nn.Module):
    """x (B, C, H, W) -> k strided convs (no norm on the first) [-> extra 3x3 convs] -> conv over
    (s0, s0) -> logit."""
    def __init__(self, channels: int, image_size: int, width: int, norm: str, in_extra: int = 0,
                 extra_layers: int = 0):
        super().__init__()
        start, stages = upsampling_plan(image_size)
        ch = width
        layers = [nn.Conv2d(channels + in_extra, ch, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for _ in range(stages - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False),                    # side / 2, ch x2
                       d_norm_layer(norm, ch * 2), nn.LeakyReLU(0.2, True)]
            ch *= 2
        for _ in range(extra_layers):
            layers += [nn.Conv2d(ch, ch, 3, 1, 1, bias=False),                        # (B, ch, s0, s0)
                       d_norm_layer(norm, ch), nn.LeakyReLU(0.2, True)]
        self.features = nn.Sequential(*layers)                                         # (B, ch, s0, s0)
        self.feature_channels, self.feature_side = ch, start
        self.head = nn.Conv2d(ch, 1, start, 1, 0, bias=False)                          # (B, 1, 1, 1)

    def forward(self, x):
        return self.head(self.features(x)).flatten()                                   # (B,) logits


@register_model("dcgan")
class DCGAN(AdversarialModel):
    """Radford 2015's architecture guidelines, at 28x28 (MNIST), 32x32 or 64x64 (CelebA)."""
    config_class = DCGANConfig
    tiny = {"z_dim": 8, "g_channels": 8, "d_channels": 8}

    def __init__(self, config: DCGANConfig):
        super().__init__(config)
        self.check_config()
        c = config
        self.generator = Generator(c.z_dim, c.channels, c.image_size, c.g_channels,
                                   extra_layers=c.g_extra_layers)
        self.discriminator = Discriminator(c.channels, c.image_size, c.d_channels,
                                           resolve_d_norm(c.d_norm, c.r1_gamma),
                                           extra_layers=c.d_extra_layers)
        self.apply(init_dcgan_weights)
        self.warn_r1_with_batchnorm()
        self.attach_ema()

    def latent_spec(self) -> LatentSpec:
        return LatentSpec(z_dim=self.config.z_dim)

    def generate(self, z, **_) -> torch.Tensor:
        """x = G(z), in [-1, 1]."""
        return self.sampling_network()(z)

    def discriminate(self, x, y=None):
        return self.discriminator(x), None
