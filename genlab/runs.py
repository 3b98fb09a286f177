"""A run is a folder. This module reads and writes it; the CLI and the dashboard go through here.

    RUN/config.json                 everything needed to rebuild the run
    RUN/status.json                 state, step, pid, heartbeat, error
    RUN/metrics.jsonl               one JSON line per log step
    RUN/samples/step_000500.png     a grid from one fixed set of latents
    RUN/checkpoints/latest.safetensors   weights, optimizer and RNG state, JSON config in the header
    RUN/STOP                        present: the run is asked to stop at its next step
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

STATES = ("starting", "running", "stopping", "stopped", "finished", "failed", "interrupted")
STALE_AFTER_S = 120.0       # a "running" run whose heartbeat is older than this (on another host) is dead


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())           # mkstemp makes 0600; use the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@functools.lru_cache(maxsize=1)
def current_umask() -> int:
    """The process umask, read once (reading it means setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: Path, default=None):
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return default


def sample_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "samples" / f"step_{step:06d}.png"


def checkpoint_path(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints" / "latest.safetensors"


# ---------------------------------------------------------------- status
def write_status(run_dir: Path, state: str, **fields) -> dict:
    """Replace status.json, keeping fields not given; stamps pid, host and heartbeat."""
    status = read_json(Path(run_dir) / "status.json", {}) or {}
    status.update(fields)
    status.update(state=state, heartbeat=time.time(), pid=os.getpid(), host=socket.gethostname())
    atomic_write_json(Path(run_dir) / "status.json", status)
    return status


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:   # a zombie (exited, not yet reaped) is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def read_status(run_dir: Path) -> dict:
    """status.json, with a run whose process has died reported as 'interrupted'."""
    run_dir = Path(run_dir)
    status = read_json(run_dir / "status.json", None)
    if status is None:
        return {"state": "interrupted" if (run_dir / "config.json").exists() else "missing",
                "step": 0, "error": "no status.json"}
    if status.get("state") in ("starting", "running", "stopping"):
        same_host = status.get("host") == socket.gethostname()
        dead = (not pid_alive(status.get("pid"))) if same_host else \
            time.time() - status.get("heartbeat", 0) > STALE_AFTER_S
        if dead:
            status = dict(status, state="interrupted",
                          error=status.get("error") or "the training process ended without a final status "
                                                       "(killed or crashed); resume it from its last checkpoint")
    return status


def is_active(status: dict) -> bool:
    return status.get("state") in ("starting", "running", "stopping")


# ---------------------------------------------------------------- stop requests
def request_stop(run_dir: Path) -> None:
    """Ask a run to stop at its next step (it saves a checkpoint first)."""
    atomic_write_bytes(Path(run_dir) / "STOP", b"stop\n")


def stop_requested(run_dir: Path) -> bool:
    return (Path(run_dir) / "STOP").exists()


def clear_stop(run_dir: Path) -> None:
    (Path(run_dir) / "STOP").unlink(missing_ok=True)


# ---------------------------------------------------------------- metrics
def append_metrics(run_dir: Path, record: dict) -> None:
    """Append one JSON line and flush it to disk."""
    with open(Path(run_dir) / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_metrics(run_dir: Path) -> list[dict]:
    """All complete metric lines (a partly written last line is skipped)."""
    records = []
    try:
        with open(Path(run_dir) / "metrics.jsonl") as f:
            for line in f:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    except FileNotFoundError:
        pass
    return records


def truncate_after(run_dir: Path, step: int) -> None:
    """On resume: drop metric lines and sample grids written after the checkpoint's step."""
    run_dir = Path(run_dir)
    kept = [r for r in read_metrics(run_dir) if r.get("step", 0) <= step]
    atomic_write_bytes(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in kept).encode())
    for png in (run_dir / "samples").glob("step_*.png"):
        if int(png.stem.split("_")[1]) > step:
            png.unlink()


def list_samples(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every sample grid, oldest first."""
    found = []
    for png in (Path(run_dir) / "samples").glob("step_*.png"):
        try:
            found.append((int(png.stem.split("_")[1]), png))
        except ValueError:
            pass
    return sorted(found)


# ---------------------------------------------------------------- runs
@dataclass
class RunInfo:
    """What a table of runs shows about one run folder."""
    path: Path
    name: str
    config: dict
    status: dict
    last_metrics: dict
    newest_sample: Path | None
    created: float


def run_info(run_dir: Path) -> RunInfo:
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir)
    samples = list_samples(run_dir)
    return RunInfo(path=run_dir, name=run_dir.name, config=read_json(run_dir / "config.json", {}) or {},
                   status=read_status(run_dir), last_metrics=metrics[-1] if metrics else {},
                   newest_sample=samples[-1][1] if samples else None,
                   created=(run_dir / "config.json").stat().st_mtime
                   if (run_dir / "config.json").exists() else run_dir.stat().st_mtime)


def list_runs(runs_root: Path) -> list[RunInfo]:
    """Every run folder (one holding config.json) under runs_root, newest first."""
    root = Path(runs_root)
    if not root.is_dir():
        return []
    runs = [run_info(p) for p in root.iterdir() if (p / "config.json").exists()]
    return sorted(runs, key=lambda r: r.created, reverse=True)


def new_run_dir(runs_root: Path, model: str, dataset: str) -> Path:
    """A fresh, unique folder name: runs/20261125-160312-dcgan-mnist."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(runs_root) / f"{stamp}-{model}-{dataset}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def delete_run(run_dir: Path, wait_s: float = 30.0) -> None:
    """Delete a run folder, stopping its process first if it is still running."""
    run_dir = Path(run_dir)
    if is_active(read_status(run_dir)):
        request_stop(run_dir)
        deadline = time.time() + wait_s
        while time.time() < deadline and is_active(read_status(run_dir)):
            time.sleep(0.2)
        pid = read_status(run_dir).get("pid")
        if is_active(read_status(run_dir)) and pid_alive(pid):
            os.kill(pid, 15)
    shutil.rmtree(run_dir, ignore_errors=True)
