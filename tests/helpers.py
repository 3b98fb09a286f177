"""Tiny configs shared by the tests: every model small enough to train a step in milliseconds."""
from __future__ import annotations

TINY_MODEL = {
    "gan": {"z_dim": 8, "g_hidden": 32, "d_hidden": 16, "maxout_pieces": 2},
    "dcgan": {"z_dim": 8, "g_channels": 8, "d_channels": 8},
    "cgan": {"z_dim": 8, "g_channels": 8, "d_channels": 8},
    "infogan": {"z_dim": 8, "g_channels": 8, "d_channels": 8, "fc_width": 32, "q_width": 16},
    "vae": {"z_dim": 4, "width": 8, "hidden": 32},
}


def tiny_config(model: str = "dcgan", **train):
    """A run config on the synthetic set with a tiny model."""
    from genlab import make_config
    values = dict(model=model, dataset="synthetic", image_size=28, steps=4, batch_size=8,
                  log_every=2, sample_every=2, checkpoint_every=2, device="cpu")
    values.update(train)
    return make_config(values, TINY_MODEL[model])
