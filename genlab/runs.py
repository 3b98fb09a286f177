"""A run is a folder. This module reads and writes it; the CLI and the dashboard go through here.

    RUN/config.json                 everything needed to rebuild the run
    RUN/status.json                 state, step, pid, heartbeat, error
    RUN/metrics.jsonl               one JSON line per log step
    RUN/samples/step_000500.png     a grid from one fixed set of latents
    RUN/checkpoints/latest.safetensors   weights, optimizer and RNG state, JSON config in the header
    RUN/STOP                        present: the run is asked to stop at its next step
    RUN/control.json                pause / continue, manual steps and slow motion, read between steps
    RUN/.lock                       flock held by the one training process writing the run; holds its identity
    RUN/.reserve                    256 KiB deleted on ENOSPC to make room for a final "failed" status
    RUN/owner.json                  the SHA-256 of the session token of the visitor who started it (public mode)

A process is identified by (pid, start time in clock ticks since boot, boot id, host), never by its pid
alone: a pid reused by another process does not match, so it is never taken for the run nor signalled.
"""
from __future__ import annotations

import errno
import fcntl
import functools
import json
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .config import ConfigError

STATES = ("starting", "running", "stopping", "stopped", "finished", "failed", "interrupted")
STALE_AFTER_S = 120.0       # a "running" run whose heartbeat is older than this (on another host) is dead
LOCK_NAME = ".lock"
RESERVE_NAME = ".reserve"
RESERVE_BYTES = 256 * 1024


class RunBusy(ConfigError):
    """Another live process is writing this run folder; the message names it (pid, host, since)."""


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


def strip_path(run_dir: Path, step: int) -> Path:
    """The denoising strip of a model with a sampling trajectory, written next to the grid of the same step."""
    return Path(run_dir) / "samples" / f"strip_{step:06d}.png"


def checkpoint_path(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints" / "latest.safetensors"


# ---------------------------------------------------------------- status
def write_status(run_dir: Path, state: str, identity: dict | None = None, **fields) -> dict:
    """Replace status.json, keeping fields not given; stamps the writer's identity (or `identity`) and heartbeat."""
    status = read_json(Path(run_dir) / "status.json", {}) or {}
    if not isinstance(status, dict):
        status = {}
    status.update(fields)
    status.update(identity or process_identity(os.getpid()) or {"pid": os.getpid(), "host": socket.gethostname()})
    status.update(state=state, heartbeat=time.time())
    path = Path(run_dir) / "status.json"
    if is_active(status):
        atomic_write_json(path, status)      # a full disk fails the run: the reserve is for its final status
    else:
        write_with_reserve(run_dir, lambda: atomic_write_json(path, status))
    return status


def write_with_reserve(run_dir: Path, write) -> None:
    """Call `write()`; on a full disk, delete the run's reserve file to make room and call it once more."""
    try:
        write()
    except OSError as error:
        reserve = Path(run_dir) / RESERVE_NAME
        if error.errno != errno.ENOSPC or not reserve.exists():
            raise
        reserve.unlink()
        write()


def make_reserve(run_dir: Path) -> None:
    """Keep RESERVE_BYTES on disk for the final status of a run that fills the disk."""
    reserve = Path(run_dir) / RESERVE_NAME
    if not reserve.exists() or reserve.stat().st_size < RESERVE_BYTES:
        atomic_write_bytes(reserve, bytes(RESERVE_BYTES))


def failure_message(error: BaseException) -> str:
    """The one line a failed status shows; a full disk says so."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return (f"disk full (ENOSPC) while writing {error.filename or 'the run folder'}; free space or "
                f"delete runs, then resume from the last checkpoint")
    return f"{type(error).__name__}: {error}"


# ---------------------------------------------------------------- process identity
@functools.lru_cache(maxsize=1)
def boot_id() -> str:
    """This boot of this machine: pid start times are counted from it."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_start(pid: int) -> int | None:
    """Start time of process `pid` in clock ticks after boot (/proc/PID/stat field 22); None if no such
    process or a zombie."""
    try:
        fields = Path(f"/proc/{int(pid)}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    if fields[0] in ("Z", "X"):                           # exited, not yet reaped: not alive
        return None
    return int(fields[19])                                # field 22 counts from 1 and includes pid, comm


def process_identity(pid: int) -> dict | None:
    """{pid, pid_start, boot_id, host} of a live process, or None."""
    start = process_start(pid)
    if start is None:
        return None
    return {"pid": int(pid), "pid_start": start, "boot_id": boot_id(), "host": socket.gethostname()}


def identity_alive(identity: dict | None) -> bool:
    """Whether the process described by `identity` (a status or a lock holder) is alive on this host."""
    if not isinstance(identity, dict) or not isinstance(identity.get("pid"), int) or identity["pid"] <= 0:
        return False
    if identity.get("host") != socket.gethostname() or identity.get("boot_id") != boot_id():
        return False
    start = identity.get("pid_start")
    return start is not None and process_start(identity["pid"]) == start


def pid_alive(pid: int | None) -> bool:
    """Whether some process has this pid (any process: use identity_alive to know it is the run's)."""
    return bool(pid) and process_start(pid) is not None


def describe_holder(holder: dict) -> str:
    since = holder.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(since)) if since else "an unknown time"
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {when}"


# ---------------------------------------------------------------- the one-writer lock
class RunLock:
    """An exclusive flock on RUN/.lock, held by the one process writing the run; released on exit or death."""

    def __init__(self, run_dir: Path, fd: int):
        self.run_dir, self.fd = Path(run_dir), fd

    @classmethod
    def acquire(cls, run_dir: Path, wait_s: float = 2.0) -> "RunLock":
        """Take the lock (a probe holding it for an instant is waited out); RunBusy names a live holder."""
        run_dir = Path(run_dir)
        fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.time() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.time() > deadline:
                    holder = read_json(run_dir / LOCK_NAME, {}) or {}
                    os.close(fd)
                    raise RunBusy(f"{run_dir} is still running ({describe_holder(holder)}); "
                                  f"stop it before resuming") from None
                time.sleep(0.02)
        holder = dict(process_identity(os.getpid()) or {"pid": os.getpid()}, since=time.time())
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        return cls(run_dir, fd)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)                        # closing the only descriptor releases the flock
            self.fd = None


def lock_holder(run_dir: Path) -> dict | None:
    """The identity of the process holding RUN/.lock ({} if it has not written it yet), or None if free."""
    path = Path(run_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None                                  # free (closing the descriptor drops the probe)
    except BlockingIOError:
        holder = read_json(path, {})
        return holder if isinstance(holder, dict) else {}
    finally:
        os.close(fd)


def claim_run(run_dir: Path, config: dict | None = None) -> RunLock:
    """What a training process does before writing a run: take the lock, clean leftover temporary files,
    keep the disk reserve, and write config.json if missing (so a kill during start-up is 'interrupted')."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock.acquire(run_dir)
    try:
        for folder in (run_dir, run_dir / "samples", run_dir / "checkpoints"):
            for tmp in folder.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)
        make_reserve(run_dir)
        if config is not None and not (run_dir / "config.json").exists():
            atomic_write_json(run_dir / "config.json", config)
    except BaseException:
        lock.release()
        raise
    return lock


def check_not_running(run_dir: Path, wait_s: float = 2.0) -> None:
    """Refuse (RunBusy, naming the holder) when another live process writes this run; a brief holder
    (a launcher recording how its child ended) is waited out."""
    deadline = time.time() + wait_s
    holder = lock_holder(run_dir)
    while holder is not None and time.time() < deadline:
        time.sleep(0.02)
        holder = lock_holder(run_dir)
    if holder is not None:
        raise RunBusy(f"{run_dir} is still running ({describe_holder(holder)}); stop it before resuming")
    status = read_status(run_dir)
    if is_active(status) and status.get("pid") != os.getpid():
        raise RunBusy(f"{run_dir} is still running ({describe_holder(dict(status, since=status.get('heartbeat')))}); "
                      f"stop it before resuming")


def run_alive(run_dir: Path, status: dict) -> bool:
    """Whether the process of an active status lives: on this host the lock, else the exact identity
    (start-up, before the lock is taken); on another host a fresh heartbeat."""
    if status.get("host") != socket.gethostname():
        return time.time() - status.get("heartbeat", 0) <= STALE_AFTER_S
    return lock_holder(run_dir) is not None or identity_alive(status)


def read_status(run_dir: Path) -> dict:
    """status.json, with a run whose process has died reported as 'interrupted'."""
    run_dir = Path(run_dir)
    status = read_json(run_dir / "status.json", None)
    if not isinstance(status, dict):
        return {"state": "interrupted" if (run_dir / "config.json").exists() else "missing",
                "step": 0, "error": "no status.json"}
    if status.get("state") in ("starting", "running", "stopping"):
        if not run_alive(run_dir, status):
            status = dict(status, state="interrupted",
                          error=status.get("error") or "the training process ended without a final status "
                                                       "(killed or crashed); resume it from its last checkpoint")
    return status


def is_active(status: dict) -> bool:
    return status.get("state") in ("starting", "running", "stopping")


# ---------------------------------------------------------------- stop requests
def request_stop(run_dir: Path) -> None:
    """Ask a run to stop at its next step (it saves a checkpoint first); only the file's presence counts."""
    with open(Path(run_dir) / "STOP", "wb") as f:
        f.write(b"stop\n")


def stop_requested(run_dir: Path) -> bool:
    return (Path(run_dir) / "STOP").exists()


def clear_stop(run_dir: Path) -> None:
    (Path(run_dir) / "STOP").unlink(missing_ok=True)


# ---------------------------------------------------------------- step-by-step control
CONTROL_NAME = "control.json"
CONTROL_LOCK_NAME = ".control.lock"
CONTROL_MODES = ("running", "paused")
MAX_STEP_K = 100            # manual steps one request may ask for
MAX_PENDING = 20            # requests the training process has not yet taken
MAX_SLOW_S = 5.0            # slow motion: seconds of sleep between steps, at most
MAX_CONTROL_BYTES = 16384   # a bigger control file is not read


def default_control() -> dict:
    return {"mode": "running", "slow_s": 0.0, "requests": []}


def check_control(control) -> dict:
    """The control a file or a caller gives, checked field by field (ConfigError names the bad one).

    {"mode": "running" | "paused", "slow_s": 0..MAX_SLOW_S,
     "requests": [{"seq": n >= 1 (increasing), "phases": [names] or null (all), "k": 1..MAX_STEP_K}, ...]}
    """
    if not isinstance(control, dict) or set(control) - {"mode", "slow_s", "requests"}:
        raise ConfigError("a control is an object with the keys mode, slow_s and requests")
    mode, slow, requests = control.get("mode", "running"), control.get("slow_s", 0.0), control.get("requests", [])
    if mode not in CONTROL_MODES:
        raise ConfigError(f"mode must be one of {', '.join(CONTROL_MODES)}, got {str(mode)[:20]!r}")
    if isinstance(slow, bool) or not isinstance(slow, (int, float)) or not 0.0 <= slow <= MAX_SLOW_S:
        raise ConfigError(f"slow motion must be 0 to {MAX_SLOW_S:g} seconds between steps, got {str(slow)[:20]}")
    if not isinstance(requests, list) or len(requests) > MAX_PENDING:
        raise ConfigError(f"at most {MAX_PENDING} step requests may wait; let the run take them first")
    checked, last_seq = [], 0
    for request in requests:
        if not isinstance(request, dict) or set(request) != {"seq", "phases", "k"}:
            raise ConfigError("a step request is an object with the keys seq, phases and k")
        seq, phases, k = request["seq"], request["phases"], request["k"]
        if isinstance(seq, bool) or not isinstance(seq, int) or seq <= last_seq:
            raise ConfigError("step requests carry increasing whole numbers seq >= 1")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_STEP_K:
            raise ConfigError(f"k must be a whole number of steps from 1 to {MAX_STEP_K}, got {str(k)[:20]}")
        if phases is not None and (not isinstance(phases, list) or not 1 <= len(phases) <= 8 or not all(
                isinstance(p, str) and p.isalnum() and len(p) <= 16 for p in phases) or len(set(phases)) < len(phases)):
            raise ConfigError("phases must be null (all) or a list of distinct short phase names")
        checked.append({"seq": seq, "phases": phases, "k": k})
        last_seq = seq
    return {"mode": mode, "slow_s": float(slow), "requests": checked}


def read_control(run_dir: Path) -> dict:
    """The run's control (pause / continue, step requests, slow motion); a missing, oversized or
    invalid file reads as the default: running, no requests, no slow motion."""
    path = Path(run_dir) / CONTROL_NAME
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONTROL_BYTES + 1)
        if len(data) > MAX_CONTROL_BYTES:
            return default_control()
        return check_control(json.loads(data))
    except (OSError, ValueError, ConfigError):           # JSONDecodeError and bad UTF-8 are ValueErrors
        return default_control()


def control_stamp(run_dir: Path) -> tuple | None:
    """(mtime_ns, size, inode) of the control file, or None: the cheap test of whether it changed."""
    try:
        stat = os.stat(Path(run_dir) / CONTROL_NAME)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def update_control(run_dir: Path, change) -> dict:
    """Read the control, apply `change(control) -> control`, check it and write it atomically, all under
    an flock on RUN/.control.lock (two clicks at once do not lose one); returns what was written."""
    fd = os.open(Path(run_dir) / CONTROL_LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        control = check_control(change(read_control(run_dir)))
        atomic_write_json(Path(run_dir) / CONTROL_NAME, control)
        return control
    finally:
        os.close(fd)


def clear_control(run_dir: Path) -> None:
    """A new training process starts running, without old requests."""
    (Path(run_dir) / CONTROL_NAME).unlink(missing_ok=True)


def is_paused(status: dict) -> bool:
    """Whether a running run's process is paused (it says so in status.json)."""
    return status.get("state") == "running" and bool(status.get("paused"))


# ---------------------------------------------------------------- metrics
def append_metrics(run_dir: Path, record: dict) -> None:
    """Append one JSON line and flush it to disk (a full disk raises OSError ENOSPC)."""
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
    for step_seen, png in list_samples(run_dir, "strip"):
        if step_seen > step:
            png.unlink()


def list_samples(run_dir: Path, kind: str = "step") -> list[tuple[int, Path]]:
    """(step, path) of every sample grid (kind "step"), or denoising strip ("strip"), oldest first."""
    found = []
    for png in (Path(run_dir) / "samples").glob(f"{kind}_*.png"):
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
                   created=created_time(run_dir, samples))


def created_time(run_dir: Path, samples: list[tuple[int, Path]]) -> float:
    """When a run was made: its first grid (written at step 0, never rewritten) or its config.json,
    whichever is older (a resume rewrites config.json with the new total)."""
    times = [path.stat().st_mtime for path in (run_dir / "config.json", samples[0][1] if samples else None)
             if path is not None and path.exists()]
    return min(times) if times else run_dir.stat().st_mtime


def list_runs(runs_root: Path) -> list[RunInfo]:
    """Every run folder (one holding config.json; hidden ones are being made) under runs_root, newest first."""
    root = Path(runs_root)
    if not root.is_dir():
        return []
    runs = [run_info(p) for p in root.iterdir() if not p.name.startswith(".") and (p / "config.json").exists()]
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


def folder_bytes(path: Path) -> int:
    """Bytes of all files under `path` (what the stored-bytes cap counts)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total
