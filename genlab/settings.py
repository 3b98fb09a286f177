"""One settings object: where runs, data and shipped checkpoints live, and what a public server allows.

Read once from the environment (`Settings.from_env()`) by the entry points (CLI, server, runner,
explorer app) and passed down; no other module reads GENLAB_* variables.

    GENLAB_RUNS_ROOT      folder of run folders                  (default ./runs)
    GENLAB_DATA_ROOT      where data sets are downloaded/cached  (default ./data)
    GENLAB_CHECKPOINTS    shipped, exported checkpoints           (default <repo>/checkpoints)
    GENLAB_PUBLIC=1       public mode: the caps of `PublicLimits` apply to every visitor
    GENLAB_SECRET         key that signs visitors' session tokens (default: a random key per runs root)
    GENLAB_MAX_*          override one public cap, e.g. GENLAB_MAX_STEPS=500 (see `PublicLimits`)
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

REPO = Path(__file__).resolve().parents[1]
TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class PublicLimits:
    """The caps a public server enforces on every visitor (None: no cap, the local default)."""
    max_active_runs: int | None = None        # training processes at once, all visitors together
    max_steps: int | None = None              # steps per run
    max_batch_size: int | None = None         # images per batch
    max_parameters: int | None = None         # parameters of the model a visitor may build
    max_image_size: int | None = None         # image side in pixels
    max_run_seconds: float | None = None      # wall-clock time of one training process
    min_sample_every: int | None = None       # sample grids at most this often (steps)
    min_checkpoint_every: int | None = None   # checkpoints at most this often (steps)
    max_stored_runs: int | None = None        # run folders kept; oldest finished public runs evicted
    max_stored_bytes: int | None = None       # bytes of all run folders together
    max_upload_bytes: int | None = None       # an image uploaded to the explorer
    builtin_data_only: bool = False           # no data_path / data_root chosen by a visitor
    stop_grace_s: float = 20.0                # SIGTERM, then SIGKILL after this long

    @classmethod
    def public_defaults(cls) -> "PublicLimits":
        """The caps of a public demo on a small CPU machine (a free Space or a class server)."""
        return cls(max_active_runs=1, max_steps=2000, max_batch_size=256, max_parameters=20_000_000,
                   max_image_size=64, max_run_seconds=1800.0, min_sample_every=50,
                   min_checkpoint_every=100, max_stored_runs=20, max_stored_bytes=2 * 1024 ** 3,
                   max_upload_bytes=5 * 1024 ** 2, builtin_data_only=True)


@dataclass(frozen=True)
class Settings:
    """Roots and limits, read once and passed down."""
    runs_root: Path = Path("runs")
    data_root: Path = Path("data")
    checkpoints_dir: Path = REPO / "checkpoints"
    public: bool = False
    limits: PublicLimits = field(default_factory=PublicLimits)
    secret: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> "Settings":
        """Settings from GENLAB_* variables; keyword overrides (e.g. from CLI flags) win."""
        env = os.environ if environ is None else environ
        public = env.get("GENLAB_PUBLIC", "0").strip().lower() in TRUE
        limits = PublicLimits.public_defaults() if public else PublicLimits()
        caps = {}
        for f in dataclasses.fields(PublicLimits):
            text = env.get("GENLAB_" + f.name.upper())
            if text is None or f.name == "builtin_data_only":
                continue
            kind = float if f.name.endswith(("_s", "_seconds")) else int
            caps[f.name] = None if text.strip().lower() in ("", "none") else kind(text)
        limits = dataclasses.replace(limits, **caps)
        values = dict(runs_root=Path(env.get("GENLAB_RUNS_ROOT", "runs")),
                      data_root=Path(env.get("GENLAB_DATA_ROOT", "data")),
                      checkpoints_dir=Path(env.get("GENLAB_CHECKPOINTS", str(REPO / "checkpoints"))),
                      public=public, limits=limits, secret=env.get("GENLAB_SECRET") or None)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The environment that makes `from_env()` in a child process (a page, a runner) return these settings."""
        env = {"GENLAB_RUNS_ROOT": str(Path(self.runs_root).resolve()),
               "GENLAB_DATA_ROOT": str(self.data_root),
               "GENLAB_CHECKPOINTS": str(Path(self.checkpoints_dir).resolve()),
               "GENLAB_PUBLIC": "1" if self.public else "0"}
        for f in dataclasses.fields(PublicLimits):
            if f.name != "builtin_data_only":
                value = getattr(self.limits, f.name)
                env["GENLAB_" + f.name.upper()] = "none" if value is None else str(value)
        if self.secret:
            env["GENLAB_SECRET"] = self.secret
        return env
