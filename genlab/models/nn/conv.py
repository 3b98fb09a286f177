"""Building blocks shared by the GANs and the VAE: the upsampling plan, DCGAN init, discriminator norms."""
from __future__ import annotations

from torch import nn

from ...config import ConfigError


def upsampling_plan(image_size: int) -> tuple[int, int]:
    """(start side, number of x2 stages): 28 = 7*2*2, 32 = 4*2*2*2, 64 = 4*2*2*2*2."""
    plans = {28: (7, 2), 32: (4, 3), 64: (4, 4)}
    if image_size not in plans:
        raise ConfigError(f"image size {image_size} is not supported; use 28, 32 or 64")
    return plans[image_size]


def init_dcgan_weights(module: nn.Module) -> None:
    """Radford 2015, sec. 4: all weights from N(0, 0.02); norm scales from N(1, 0.02), norm biases 0."""
    if isinstance(module, ConditionalBatchNorm2d):                 # (after its embeddings: apply goes children first)
        nn.init.normal_(module.gain.weight, 0.0, 0.02)             # scale 1 + gain: N(1, 0.02)
        nn.init.zeros_(module.bias.weight)
    elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm, nn.LayerNorm)):
        if module.weight is not None:
            nn.init.normal_(module.weight, 1.0, 0.02)
            nn.init.zeros_(module.bias)


class ConditionalBatchNorm2d(nn.Module):
    """de Vries et al. 2017 (conditional BN): BN(x) * (1 + gamma_y) + beta_y, gain and bias looked up per class."""
    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Embedding(num_classes, channels)            # gamma_y - 1
        self.bias = nn.Embedding(num_classes, channels)            # beta_y
        init_dcgan_weights(self)

    def forward(self, x, y):                                       # (B, ch, h, w), (B,)
        return self.norm(x) * (1 + self.gain(y)[:, :, None, None]) + self.bias(y)[:, :, None, None]


D_NORMS = ("auto", "batch", "layer", "none")


def resolve_d_norm(kind: str, r1_gamma: float) -> str:
    """auto: BatchNorm as in DCGAN, or a per-sample norm when R1 (a per-sample penalty) is on."""
    return ("layer" if r1_gamma > 0 else "batch") if kind == "auto" else kind


def d_norm_layer(kind: str, channels: int) -> nn.Module:
    """BatchNorm as in the paper, or a per-sample norm that keeps R1's gradients per sample."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)             # LayerNorm over (C, H, W), per sample
    return nn.Identity()


def norm1d(kind: str, width: int) -> nn.Module:
    """The same choice for fully connected features (B, width)."""
    return {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm}.get(kind, lambda _: nn.Identity())(width)
