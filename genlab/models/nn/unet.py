"""A small time- and class-conditioned U-Net, the denoiser of DDPM (Ho et al. 2020, appendix B) and the
velocity network of flow matching: residual blocks with GroupNorm and SiLU, conditioned by scale and shift
of their second norm, a sinusoidal time embedding (Vaswani et al. 2017) through an MLP, a class embedding
added to it (index `num_classes` is the learned
"null" class of classifier-free guidance, Ho & Salimans 2022), and self-attention at the lowest resolution.

    28x28, channel_mult (1, 2, 2):     28 -> 14 -> 7   (attention at 7x7)
    32x32 / 64x64, (1, 2, 2, 2):       32 -> 16 -> 8 -> 4 / 64 -> 32 -> 16 -> 8

`patch` p > 1 folds each p x p block of pixels into channels before the first convolution and unfolds
the output the same way (space-to-depth; the "patching" of Hoogeboom et al. 2023, simple diffusion §3.1):
a 64x64x3 image enters as 32x32x12, so every level runs at half the resolution, about 4x cheaper.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm (Wu & He 2018) with at most 32 groups of at least 4 channels where the width allows
    (32 x 4 at 128 channels, as in Ho's 128-wide U-Net), so a group is never a single channel."""
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0 and (channels // g >= 4 or g == 1))
    return nn.GroupNorm(groups, channels)


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of (possibly fractional) times t (B,) -> (B, dim), as in Ho's code."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]                                        # (B, half)
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=1)               # (B, 2*half)
    return F.pad(embedding, (0, dim - 2 * half))                                   # (B, dim)


class ResBlock(nn.Module):
    """GN-SiLU-conv, GN modulated by the embedding, SiLU-dropout-conv, plus the (1x1) skip.

    The embedding scales and shifts the normalized features, GN(h) (1 + scale) + shift (the "scale-shift
    norm" of Dhariwal & Nichol 2021): a bias added before the GroupNorm, as in Ho's code, is partly
    (wholly, for one-channel groups) removed again by the normalization."""

    def __init__(self, ch_in: int, ch_out: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = group_norm(ch_in), nn.Conv2d(ch_in, ch_out, 3, 1, 1)
        self.emb = nn.Linear(emb_dim, 2 * ch_out)
        self.norm2, self.conv2 = group_norm(ch_out), nn.Conv2d(ch_out, ch_out, 3, 1, 1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(ch_in, ch_out, 1) if ch_in != ch_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:                          # (B, Ci, H, W), (B, E)
        h = self.conv1(F.silu(self.norm1(x)))                                      # (B, Co, H, W)
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)     # (B, Co, 1, 1) each
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))                                    # (B, Co, H, W)
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions, with a GroupNorm in front and a residual."""

    def __init__(self, channels: int, head_dim: int = 32):
        super().__init__()
        self.heads = channels // head_dim if channels % head_dim == 0 else 1
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:                                        # (B, C, H, W)
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).view(b, 3, self.heads, c // self.heads, h * w)
        q, k, v = qkv.transpose(-1, -2).unbind(1)                                  # (B, heads, HW, C/heads) each
        attended = F.scaled_dot_product_attention(q, k, v)                         # (B, heads, HW, C/heads)
        return x + self.out(attended.transpose(-1, -2).reshape(b, c, h, w))


class Level(nn.Module):
    """The residual blocks of one resolution, each optionally followed by self-attention."""

    def __init__(self, blocks: list[ResBlock], attention: bool):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.attention = nn.ModuleList(SelfAttention(b.conv2.out_channels) if attention else nn.Identity()
                                       for b in blocks)


class UNet(nn.Module):
    """eps(x_t, t, y) or v(x_t, t, y): (B, C, H, W) -> (B, C, H, W).

    `channel_mult[i]` * `width` channels at level i (resolution H / 2**i), `blocks` residual blocks per
    level on the way down and `blocks + 1` on the way up (each taking one skip connection, as in Ho's
    code), self-attention in the lowest level and in the middle. `num_classes` > 0 adds a class embedding
    with one extra row, the null class `num_classes`; y = None skips it (an unconditional network).
    `patch` folds p x p pixels into channels around the network (p = 1: none).
    """

    def __init__(self, channels: int, width: int, channel_mult: tuple[int, ...], blocks: int,
                 num_classes: int = 0, dropout: float = 0.0, attention: bool = True, patch: int = 1):
        super().__init__()
        self.width, self.null_class, self.patch = width, num_classes, patch
        emb_dim = 4 * width
        self.time_mlp = nn.Sequential(nn.Linear(width, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_embedding = nn.Embedding(num_classes + 1, emb_dim) if num_classes > 0 else None
        self.conv_in = nn.Conv2d(channels * patch ** 2, width, 3, 1, 1)
        lowest = len(channel_mult) - 1

        skips, ch = [width], width
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        for level, mult in enumerate(channel_mult):
            level_blocks = []
            for _ in range(blocks):
                level_blocks.append(ResBlock(ch, width * mult, emb_dim, dropout))
                ch = width * mult
                skips.append(ch)
            self.down.append(Level(level_blocks, attention and level == lowest))
            if level < lowest:
                self.downsample.append(nn.Conv2d(ch, ch, 3, 2, 1))              # H -> ceil(H / 2)
                skips.append(ch)

        self.mid1 = ResBlock(ch, ch, emb_dim, dropout)
        self.mid_attention = SelfAttention(ch) if attention else nn.Identity()
        self.mid2 = ResBlock(ch, ch, emb_dim, dropout)

        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            level_blocks = []
            for _ in range(blocks + 1):
                level_blocks.append(ResBlock(ch + skips.pop(), width * mult, emb_dim, dropout))
                ch = width * mult
            self.up.append(Level(level_blocks, attention and level == lowest))
            if level > 0:
                self.upsample.append(nn.Conv2d(ch, ch, 3, 1, 1))                   # after a nearest x2
        self.norm_out, self.conv_out = group_norm(ch), nn.Conv2d(ch, channels * patch ** 2, 3, 1, 1)

    def embed(self, t: Tensor, y: Tensor | None) -> Tensor:
        """The conditioning vector (B, 4*width): MLP(sinusoid(t)) + class embedding(y)."""
        emb = self.time_mlp(timestep_embedding(t, self.width))                     # (B, E)
        if self.class_embedding is not None and y is not None:
            emb = emb + self.class_embedding(y)                                    # y = null_class: unconditional
        return emb

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:   # (B, C, H, W), (B,), (B,)
        emb = self.embed(t, y)
        if self.patch > 1:
            x = F.pixel_unshuffle(x, self.patch)                                   # (B, C*p*p, H/p, W/p)
        h = self.conv_in(x)                                                        # (B, w, H/p, W/p)
        skips = [h]
        for i, level in enumerate(self.down):
            for block, attention in zip(level.blocks, level.attention):
                h = attention(block(h, emb))                                       # (B, w*mult, H_i, W_i)
                skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)                                          # (B, ch, H_i/2, W_i/2)
                skips.append(h)
        h = self.mid2(self.mid_attention(self.mid1(h, emb)), emb)                  # lowest resolution
        for i, level in enumerate(self.up):
            for block, attention in zip(level.blocks, level.attention):
                h = attention(block(torch.cat([h, skips.pop()], dim=1), emb))      # (B, w*mult, H_i, W_i)
            if i < len(self.upsample):
                h = F.interpolate(h, size=skips[-1].shape[-2:], mode="nearest")    # 7 -> 14 -> 28
                h = self.upsample[i](h)
        out = self.conv_out(F.silu(self.norm_out(h)))                              # (B, C*p*p, H/p, W/p)
        return F.pixel_shuffle(out, self.patch) if self.patch > 1 else out         # (B, C, H, W)
