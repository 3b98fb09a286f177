"""Conditional GAN (Mirza & Osindero 2014), convolutional: the class y is fed to both G and D.

As in the paper, y enters as a one-hot vector joined to each network's input: to z for G,
and to the image for D (as 10 constant feature maps). The networks are DCGAN's.
Option `conditioning="projection"` instead gives D the projection form of Miyato & Koyama 2018
(eq. 3): D(x, y) = psi(phi(x)) + embed(y) . sum_hw phi(x), a stronger use of y in D; and
`g_conditioning="cbn"` gives G class-conditional BatchNorm (de Vries et al. 2017) in every layer,
the generator Miyato & Koyama pair with the projection D, instead of y joined to z only.
`aux_class_weight` > 0 adds AC-GAN's class term (Odena et al. 2017): a linear classifier on the
projection D's pooled features, trained on real and fake images, that G is also trained to satisfy.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError, param
from .adversarial import AdversarialModel
from .base import LatentSpec
from .dcgan import DCGANConfig, Discriminator, Generator
from .nn.conv import ConditionalBatchNorm2d, init_dcgan_weights, resolve_d_norm
from .registry import register_model


@dataclass
class CGANConfig(DCGANConfig):
    """DCGAN's fields; num_classes (from the data set) sets the size of the one-hot y."""
    conditioning: str = param("concat", "How D sees y: one-hot maps joined to the image (Mirza 2014) "
                              "or a projection of D's features on an embedding of y (Miyato 2018).",
                              choices=("concat", "projection"))
    g_conditioning: str = param("concat", "How G sees y: one-hot joined to z (Mirza 2014), or a per-class "
                                "gain and bias in every BatchNorm of G (conditional BN, de Vries 2017).",
                                choices=("concat", "cbn"))
    aux_class_weight: float = param(0.0, "Weight of AC-GAN's class term (Odena 2017 eq. 2-3): D also "
                                    "classifies real and fake images by class, and G is trained to be "
                                    "classified as y; needs the projection D. 0 turns it off.",
                                    low=0.0, high=10.0)


class ConditionalGenerator(Generator):
    """DCGAN's G with conditional BatchNorm: every BN layer's gain and bias are looked up from y."""
    def __init__(self, z_dim: int, channels: int, image_size: int, width: int, num_classes: int,
                 extra_layers: int = 0):
        super().__init__(z_dim, channels, image_size, width, extra_layers=extra_layers,
                         norm=lambda ch: ConditionalBatchNorm2d(ch, num_classes))

    def forward(self, z, y):                                               # (B, z_dim), (B,)
        h = z[:, :, None, None]                                            # (B, z_dim, 1, 1)
        for layer in self.net:
            h = layer(h, y) if isinstance(layer, ConditionalBatchNorm2d) else layer(h)
        return h                                                           # (B, C, H, W)


class ProjectionDiscriminator(nn.Module):
    """Miyato & Koyama 2018 eq. 3: D(x, y) = psi(phi(x)) + embed(y) . sum over (h, w) of phi(x);
    with `classify`, also AC-GAN's class logits P(C | x) from the same pooled features."""
    def __init__(self, body: Discriminator, num_classes: int, classify: bool = False):
        super().__init__()
        self.body = body
        self.embed = nn.Embedding(num_classes, body.feature_channels)
        self.classifier = nn.Linear(body.feature_channels, num_classes) if classify else None

    def forward(self, x, y):
        features = self.body.features(x)                                   # (B, ch, s0, s0)
        pooled = features.sum((2, 3))                                      # (B, ch)
        unconditional = self.body.head(features).flatten()                 # (B,)
        projection = (self.embed(y) * pooled).sum(1)                       # (B,)
        class_logits = self.classifier(pooled) if self.classifier is not None else None   # (B, K)
        return unconditional + projection, class_logits


@register_model("cgan")
class CGAN(AdversarialModel):
    """G(z, y) and D(x, y) (Mirza 2014 eq. 2)."""
    conditional = True
    config_class = CGANConfig
    tiny = {"z_dim": 8, "g_channels": 8, "d_channels": 8}

    def __init__(self, config: CGANConfig):
        super().__init__(config)
        self.check_config()
        c = config
        if c.aux_class_weight > 0 and c.conditioning != "projection":
            raise ConfigError("cgan: aux_class_weight needs conditioning='projection' (D with y joined to its "
                              "input would read the class from y, not from the image)")
        if c.g_conditioning == "cbn":
            self.generator = ConditionalGenerator(c.z_dim, c.channels, c.image_size, c.g_channels,
                                                  c.num_classes, extra_layers=c.g_extra_layers)
        else:
            self.generator = Generator(c.z_dim, c.channels, c.image_size, c.g_channels,
                                       in_extra=c.num_classes, extra_layers=c.g_extra_layers)
        norm = resolve_d_norm(c.d_norm, c.r1_gamma)
        if c.conditioning == "projection":
            self.discriminator = ProjectionDiscriminator(
                Discriminator(c.channels, c.image_size, c.d_channels, norm,
                              extra_layers=c.d_extra_layers), c.num_classes, classify=c.aux_class_weight > 0)
        else:
            self.discriminator = Discriminator(c.channels, c.image_size, c.d_channels, norm,
                                               in_extra=c.num_classes, extra_layers=c.d_extra_layers)
        self.apply(init_dcgan_weights)
        self.warn_r1_with_batchnorm()
        self.attach_ema()

    def latent_spec(self) -> LatentSpec:
        return LatentSpec(z_dim=self.config.z_dim, num_classes=self.config.num_classes)

    def generate(self, z, y, **_) -> torch.Tensor:
        """x = G(z | y), in [-1, 1]."""
        if self.config.g_conditioning == "cbn":
            return self.sampling_network()(z, y)                                    # (B, C, H, W)
        y_onehot = F.one_hot(y, self.config.num_classes).to(z.dtype)                # (B, K)
        return self.sampling_network()(torch.cat([z, y_onehot], dim=1))            # (B, C, H, W)

    def discriminate(self, x, y):
        """D(x | y): the one-hot y as K constant maps beside the image channels, or the projection."""
        if self.config.conditioning == "projection":
            return self.discriminator(x, y)                                         # (B,), (B, K) or None
        b, _, h, w = x.shape
        y_maps = F.one_hot(y, self.config.num_classes).to(x.dtype)[:, :, None, None].expand(b, -1, h, w)
        return self.discriminator(torch.cat([x, y_maps], dim=1)), None             # (B,)

    def class_term(self, class_logits, y) -> tuple[torch.Tensor | None, dict]:
        """Odena 2017 eq. 2: L_C = E[log P(C = c | X)]; D and G both maximize it (its weighted negative here)."""
        if class_logits is None:
            return None, {}
        loss = F.cross_entropy(class_logits, y)
        return self.config.aux_class_weight * loss, {"loss/class": loss}

    def aux_loss(self, class_logits, latents):
        """AC-GAN's class term on fakes, in both the D and the G step."""
        return self.class_term(class_logits, latents["y"])

    def real_aux_loss(self, class_logits, y):
        """AC-GAN's class term on real images, in the D step."""
        loss, logs = self.class_term(class_logits, y)
        return loss, {"loss/class_real": logs["loss/class"]} if logs else {}
