"""Start, stop, resume and delete training runs as processes of their own, safely on a public server.

The dashboard never trains. `start_run` makes the run folder (config.json, owner.json) in a hidden
temporary folder and renames it into place, then launches `python -m genlab.runner RUN_DIR` in a new
session, so the run outlives the page, the browser tab and the dashboard process. Everything else
(state, metrics, grids) is read back from the run folder through `genlab.runs`; a run started from
`train.py` in a terminal looks the same.

    python -m genlab.runner RUN_DIR [--steps N]     train or resume the run in RUN_DIR

Every call takes a `genlab.settings.Settings` (read once by the entry point). In public mode:
- `check_config` refuses, before any folder exists, what the caps of `PublicLimits` forbid (steps, batch
  size, parameters counted on the meta device, image size, intervals, data sets other than the built-in
  ones in settings.data_root);
- the count of active runs and the start are one step under an flock on RUNS_ROOT/.runner.lock; the
  oldest finished public runs are evicted to keep max_stored_runs / max_stored_bytes;
- a training process stops itself (with a checkpoint) after max_run_seconds;
- only the visitor whose signed session token started a run may stop, resume or delete it.
Processes are identified by pid, start time, boot id and host (see `genlab.runs`): a stop or delete
never signals a process that does not match.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import hashlib
import hmac
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from . import runs
from .config import ConfigError
from .settings import Settings

PACKAGE_PARENT = Path(__file__).resolve().parents[1]      # the folder holding genlab/, put on PYTHONPATH
LOG_NAME = "train.log"                                      # the training process's stdout and stderr
OWNER_NAME = "owner.json"                                   # the hash of the owner's session token
LABEL_NAME = "label.json"                                   # {"name", "note"} a user gave the run
LABEL_LIMITS = {"name": 80, "note": 500}                    # characters kept of each
SECRET_NAME = ".secret"                                     # RUNS_ROOT/.secret: the token key when none is set
ROOT_LOCK_NAME = ".runner.lock"                             # RUNS_ROOT/.runner.lock: count-and-start
NEW_PREFIX = ".new-"                                        # a run folder being made (renamed when complete)
FOREIGN = "this run belongs to another visitor; you can watch it but only its owner can stop, resume or delete it"


class RunnerError(RuntimeError):
    """A run cannot be started, resumed, stopped or deleted as asked; the message says why."""


def as_settings(settings: Settings | str | Path) -> Settings:
    """Settings as given; a bare runs root (the old call style) means local settings for that root."""
    if isinstance(settings, Settings):
        return settings
    if isinstance(settings, (str, Path)):
        return Settings(runs_root=Path(settings))
    raise TypeError(f"expected genlab.settings.Settings, got {type(settings).__name__}")


# ---------------------------------------------------------------- ownership
def server_secret(settings: Settings) -> bytes:
    """settings.secret, else a random key kept in RUNS_ROOT/.secret (mode 0600), made once."""
    if settings.secret:
        return settings.secret.encode()
    path = Path(settings.runs_root) / SECRET_NAME
    with contextlib.suppress(FileNotFoundError):
        return bytes.fromhex(path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{SECRET_NAME}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    try:
        os.link(tmp, path)                   # atomic create-if-absent: a concurrent maker's key wins
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return bytes.fromhex(path.read_text().strip())


def new_owner_token(settings: Settings) -> str:
    """A visitor's session token: a random id and its HMAC-SHA256 under the server's secret."""
    visitor = secrets.token_urlsafe(18)
    return f"{visitor}.{hmac.new(server_secret(settings), visitor.encode(), hashlib.sha256).hexdigest()}"


def token_valid(token, settings: Settings) -> bool:
    """Whether `token` was made by `new_owner_token` with this server's secret."""
    if not isinstance(token, str) or token.count(".") != 1 or len(token) > 200:
        return False
    visitor, signature = token.split(".")
    expected = hmac.new(server_secret(settings), visitor.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(signature, expected)


def owner_hash(token: str) -> str:
    """What a run folder stores about its owner: never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


def can_control(run_dir: Path, settings: Settings, owner: str | None) -> bool:
    """Locally: always. Public: only the visitor whose valid token started the run (runs without an
    owner, e.g. from train.py, are nobody's to control)."""
    settings = as_settings(settings)
    if not settings.public:
        return True
    if not token_valid(owner, settings):
        return False
    stored = runs.read_json(Path(run_dir) / OWNER_NAME, {})
    return isinstance(stored, dict) and hmac.compare_digest(str(stored.get("owner_sha256", "")),
                                                            owner_hash(owner))


def require_control(run_dir: Path, settings: Settings, owner: str | None) -> Path:
    """The run folder, if this visitor may control it (public: it must also lie in the runs root)."""
    run_dir = Path(run_dir)
    if settings.public:
        root = Path(settings.runs_root).resolve()
        if run_dir.resolve().parent != root or run_dir.name.startswith("."):
            raise RunnerError("no such run on this server")
        if not can_control(run_dir, settings, owner):
            raise RunnerError(FOREIGN)
    return run_dir


# ---------------------------------------------------------------- a run's display name and note
def clean_label(label: dict | None) -> dict:
    """{"name", "note"} as plain one-paragraph text of bounded length (empty ones dropped)."""
    cleaned, label = {}, label if isinstance(label, dict) else {}
    for key, limit in LABEL_LIMITS.items():
        value = label.get(key)
        if isinstance(value, str):
            text = " ".join("".join(c if c.isprintable() else " " for c in value).split())[:limit]
            if text:
                cleaned[key] = text
    return cleaned


def read_label(run_dir: Path) -> dict:
    """The display name and note of a run ({} when none was given)."""
    return clean_label(runs.read_json(Path(run_dir) / LABEL_NAME, {}))


# ---------------------------------------------------------------- what a run may cost
def data_shape(train: dict) -> tuple[int, int, int]:
    """(channels, image side, classes) of the data set a validated train config names, without loading it;
    an image_size the data set cannot give is refused."""
    from .data import NATIVE_SHAPES as native                # (channels, side, classes) of the fixed-size sets
    if train["dataset"] in native:
        channels, size, classes = native[train["dataset"]]
        if train.get("image_size") not in (None, size):
            raise ConfigError(f"{train['dataset']} images are {size}x{size}; image_size "
                              f"{train['image_size']} does not match (leave it empty)")
        return channels, size, classes
    if train["dataset"] == "synthetic":
        return train.get("channels", 1), train.get("image_size") or 28, 10
    return 3, train.get("image_size") or 64, 1                    # imagefolder and other folders of images


def count_parameters(config: dict, shape: tuple[int, int, int]) -> int:
    """Parameters of the model a config builds, counted on the meta device (nothing is allocated)."""
    import torch

    from .config import from_dict
    from .models import get_model_class
    model_class = get_model_class(config["train"]["model"])
    channels, size, classes = shape
    model_config = from_dict(model_class.config_class, dict(config["model"], channels=channels,
                                                           image_size=size, num_classes=classes))
    with torch.device("meta"):
        model = model_class(model_config)
    return sum(p.numel() for p in model.parameters())


def check_config(config: dict, settings: Settings) -> dict:
    """The validated run config, or ConfigError (invalid) / RunnerError naming the public cap it breaks."""
    from .training import make_config
    settings = as_settings(settings)
    config = make_config(config["train"], config.get("model", {}))
    train, lim = config["train"], settings.limits
    shape = data_shape(train)
    parameters = count_parameters(config, shape)               # also refuses image sizes no model supports

    def cap(name: str, value, refused: bool, text: str):
        if refused:
            raise RunnerError(f"{text} (limit {name}={getattr(lim, name)}); asked for {value}")

    if lim.builtin_data_only:
        if train.get("data_path") is not None or train["dataset"] == "imagefolder":
            raise RunnerError("this server trains only on its built-in data sets (limit builtin_data_only); "
                              "a data path cannot be chosen")
        if Path(train["data_root"]).resolve() != Path(settings.data_root).resolve():
            raise RunnerError("this server trains only on its built-in data sets (limit builtin_data_only); "
                              "the data root cannot be chosen")
    if lim.max_steps is not None:
        cap("max_steps", train["steps"], train["steps"] > lim.max_steps,
            f"this server trains at most {lim.max_steps} steps per run")
    if lim.max_batch_size is not None:
        cap("max_batch_size", train["batch_size"], train["batch_size"] > lim.max_batch_size,
            f"this server allows batches of at most {lim.max_batch_size} images")
    if lim.max_image_size is not None:
        cap("max_image_size", shape[1], shape[1] > lim.max_image_size,
            f"this server allows images of at most {lim.max_image_size} px")
    if lim.max_parameters is not None:
        cap("max_parameters", f"{parameters:,}", parameters > lim.max_parameters,
            f"this server allows models of at most {lim.max_parameters:,} parameters")
    if lim.min_sample_every is not None:
        cap("min_sample_every", train["sample_every"], train["sample_every"] < lim.min_sample_every,
            f"this server writes a sample grid at most every {lim.min_sample_every} steps")
    if lim.min_checkpoint_every is not None:
        cap("min_checkpoint_every", train["checkpoint_every"],
            train["checkpoint_every"] < lim.min_checkpoint_every,
            f"this server writes a checkpoint at most every {lim.min_checkpoint_every} steps")
    check = data_check(train, settings)
    if not (check.found or check.downloadable):
        raise RunnerError(check.message)
    return config


def data_check(train: dict, settings: Settings):
    """genlab.data.check_data for a validated train config (a public server names no paths)."""
    from .data import check_data
    return check_data(train["dataset"], train["data_root"], train.get("data_path"),
                      shown_root="the server's data root" if settings.public else None)


def ensure_data(train: dict, settings: Settings) -> None:
    """The data of a validated train config is there (a missing MNIST is downloaded now, before any
    run folder is made); else RunnerError with one line (a public server's names no paths)."""
    from .config import TrainConfig
    from .data import DataError
    from .data import ensure_data as ensure
    try:
        ensure(TrainConfig(**train))
    except DataError as error:
        text = str(error)
        if settings.public:
            text = text.replace(str(Path(train["data_root"])), "the server's data root")
        raise RunnerError(text) from None


# ---------------------------------------------------------------- the runs root
@contextlib.contextmanager
def root_lock(root: Path):
    """An exclusive flock on RUNS_ROOT/.runner.lock: count-and-start, eviction and resumes are one at a time."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / ROOT_LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def active_runs(root: Path) -> list[runs.RunInfo]:
    """Runs under `root` whose process is starting, running or stopping."""
    return [info for info in runs.list_runs(root) if runs.is_active(info.status)]


def check_active(root: Path, settings: Settings) -> None:
    """Refuse a start or resume beyond max_active_runs (call it holding `root_lock`)."""
    cap = settings.limits.max_active_runs
    if cap is not None and len(active_runs(root)) >= cap:
        raise RunnerError(f"this server runs at most {cap} training run(s) at once (limit max_active_runs); "
                          f"wait for one to finish or stop yours")


def make_room(root: Path, settings: Settings, keep: Path | None = None) -> None:
    """Evict the oldest finished public runs (never an active one, never `keep`) until one more run fits
    max_stored_runs and the folders fit max_stored_bytes; refuse if they cannot (hold `root_lock`)."""
    lim = settings.limits
    if lim.max_stored_runs is None and lim.max_stored_bytes is None:
        return
    adding = 0 if keep is not None else 1
    infos = runs.list_runs(root)                                                  # newest first
    total = runs.folder_bytes(root)
    evictable = [info for info in reversed(infos) if (info.path / OWNER_NAME).exists()
                 and not runs.is_active(info.status) and (keep is None or info.path != Path(keep))]
    while (lim.max_stored_runs is not None and len(infos) + adding > lim.max_stored_runs) or \
            (lim.max_stored_bytes is not None and total >= lim.max_stored_bytes):
        if not evictable:
            name, value = ("max_stored_runs", lim.max_stored_runs) \
                if lim.max_stored_runs is not None and len(infos) + adding > lim.max_stored_runs \
                else ("max_stored_bytes", lim.max_stored_bytes)
            raise RunnerError(f"this server's run storage is full (limit {name}={value}) and no finished "
                              f"public run can be evicted; try again when a run ends")
        oldest = evictable.pop(0)
        size = runs.folder_bytes(oldest.path)
        try:
            remove_folder(oldest.path)
        except RunnerError:
            continue                                       # came alive meanwhile: keep it
        infos = [info for info in infos if info.path != oldest.path]
        total -= size


def remove_folder(run_dir: Path) -> None:
    """Delete a run folder holding its lock, so no training process can be writing it."""
    try:
        lock = runs.RunLock.acquire(run_dir, wait_s=2.0)
    except runs.RunBusy as error:
        raise RunnerError(str(error)) from None
    try:
        for _ in range(5):                           # a late status writer may add a file meanwhile
            shutil.rmtree(run_dir, ignore_errors=True)
            if not run_dir.exists():
                break
            time.sleep(0.05)
    finally:
        lock.release()


def clean_unfinished(root: Path) -> None:
    """Remove run folders whose making was interrupted (hold `root_lock`: nobody is making one)."""
    for path in Path(root).glob(NEW_PREFIX + "*"):
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- start, resume
def start_run(config: dict, settings: Settings, owner: str | None = None, label: dict | None = None) -> Path:
    """Check a {"train", "model"} config against the settings and that its data is there, make its run
    folder (with `label`, a display name and note, in label.json) and launch its training process;
    returns the run folder."""
    settings = as_settings(settings)
    if settings.public and not token_valid(owner, settings):
        raise RunnerError("this public server needs a visitor session to start a run; reload the page")
    train = dict(config["train"])
    train.setdefault("data_root", str(settings.data_root))
    config = check_config({"train": train, "model": config.get("model", {})}, settings)   # before any folder
    ensure_data(config["train"], settings)           # a run is never made for data that is not there
    root = Path(settings.runs_root)
    with root_lock(root):
        clean_unfinished(root)
        check_active(root, settings)
        make_room(root, settings)
        run_dir = runs.new_run_dir(root, config["train"]["model"], config["train"]["dataset"])
        making = root / f"{NEW_PREFIX}{secrets.token_hex(6)}"
        making.mkdir()
        runs.atomic_write_json(making / "config.json", config)
        if owner is not None and token_valid(owner, settings):
            runs.atomic_write_json(making / OWNER_NAME, {"owner_sha256": owner_hash(owner)})
        if clean_label(label):
            runs.atomic_write_json(making / LABEL_NAME, clean_label(label))
        runs.make_reserve(making)
        os.rename(making, run_dir)                   # complete or absent: a kill leaves no half-made run
        launch(run_dir, settings, steps=None)
    return run_dir


def resume_run(run_dir: Path, settings: Settings, owner: str | None = None, steps: int | None = None) -> Path:
    """Continue a stopped, interrupted, failed or finished run in a new process, optionally to `steps` in total."""
    settings = as_settings(settings)
    run_dir = require_control(run_dir, settings, owner)
    config = runs.read_json(run_dir / "config.json")
    if not isinstance(config, dict) or "train" not in config:
        raise RunnerError(f"{run_dir.name} is not a run folder (no config.json)")
    total = steps if steps is not None else config["train"]["steps"]
    checked = check_config({"train": dict(config["train"], steps=total), "model": config.get("model", {})},
                           settings)
    ensure_data(checked["train"], settings)
    with root_lock(run_dir.parent):
        clean_unfinished(run_dir.parent)
        status = runs.read_status(run_dir)
        if runs.is_active(status):
            raise RunnerError(f"{run_dir.name} is still {status['state']}; stop it before resuming")
        if total <= status.get("step", 0) and runs.checkpoint_path(run_dir).exists():
            raise RunnerError(f"{run_dir.name} is already at step {status.get('step', 0)} of {total}; "
                              f"give a larger total number of steps to train on")
        check_active(run_dir.parent, settings)
        make_room(run_dir.parent, settings, keep=run_dir)
        launch(run_dir, settings, steps=steps)
    return run_dir


# ---------------------------------------------------------------- processes
class Process:
    """A verified handle on a run's process: a pidfd opened, then checked against the recorded identity,
    so every later signal reaches that process and no other."""

    def __init__(self, identity: dict):
        self.identity, self.fd = identity, None
        with contextlib.suppress(OSError, AttributeError):
            self.fd = os.pidfd_open(identity["pid"])
        if not runs.identity_alive(identity):
            self.close()
            raise ProcessLookupError(identity.get("pid"))

    def send(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if self.fd is not None:
                signal.pidfd_send_signal(self.fd, sig)
            elif runs.identity_alive(self.identity):
                os.kill(self.identity["pid"], sig)

    def wait(self, timeout: float) -> bool:
        """True once the process has exited (within `timeout` seconds)."""
        if self.fd is not None:
            return bool(select.select([self.fd], [], [], max(timeout, 0.0))[0])
        deadline = time.time() + timeout
        while runs.identity_alive(self.identity):
            if time.time() > deadline:
                return False
            time.sleep(0.05)
        return True

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def run_process(run_dir: Path, status: dict, wait_s: float = 1.0) -> Process | None:
    """The verified process writing the run (the lock's holder, or in start-up the status's), or None."""
    deadline = time.time() + wait_s
    while True:
        holder = runs.lock_holder(run_dir)
        candidate = holder if holder is not None else status
        with contextlib.suppress(ProcessLookupError):
            return Process(candidate)
        if holder is None or time.time() > deadline:    # a holder that has not yet written its identity
            return None
        time.sleep(0.05)


def mark_ended(run_dir: Path, identity: dict, state: str, **fields) -> bool:
    """Record how `identity`'s process ended, if status.json still shows it active; under the run lock."""
    if not (Path(run_dir) / "status.json").exists():
        return False                                    # deleted meanwhile
    try:
        lock = runs.RunLock.acquire(run_dir, wait_s=1.0)
    except (runs.RunBusy, OSError):
        return False                                    # a new training process writes this run now
    try:
        status = runs.read_json(run_dir / "status.json", {}) or {}
        if not runs.is_active(status) or status.get("pid") != identity.get("pid") or \
                status.get("pid_start") != identity.get("pid_start"):
            return False
        runs.write_status(run_dir, state, identity={k: identity[k] for k in ("pid", "pid_start", "boot_id", "host")
                                                    if k in identity}, **fields)
        return True
    except OSError:                                     # e.g. the disk is full and the reserve is spent
        return False
    finally:
        lock.release()


def record_exit(run_dir: Path, identity: dict, returncode: int) -> None:
    """A child that died without a final status: say how (signal or exit code)."""
    if returncode < 0:
        name = signal.Signals(-returncode).name
        mark_ended(run_dir, identity, "interrupted", error=f"the training process was killed by {name}; "
                                                           f"resume it from its last checkpoint")
    elif returncode != 0:
        mark_ended(run_dir, identity, "failed", error=f"the training process exited with code {returncode} "
                                                      f"without a final status; see {LOG_NAME}")


def stop_run(run_dir: Path, settings: Settings, owner: str | None = None, wait: bool = False) -> None:
    """Ask a running run to stop: STOP file and SIGTERM (it finishes its step, saves a checkpoint and exits);
    after limits.stop_grace_s a process still there gets SIGKILL and the run is marked stopped.
    The escalation runs in a thread, or here with wait=True."""
    settings = as_settings(settings)
    run_dir = require_control(run_dir, settings, owner)
    status = runs.read_status(run_dir)
    if not runs.is_active(status):
        raise RunnerError(f"{run_dir.name} is not running")
    runs.request_stop(run_dir)                   # status.json stays the training process's to write
    process = run_process(run_dir, status) if status.get("host") == socket.gethostname() else None
    if process is None:
        return                                   # another host, or already gone: the STOP file is all
    if status.get("state") == "running":         # in start-up SIGTERM would kill before a checkpoint
        process.send(signal.SIGTERM)
    grace = settings.limits.stop_grace_s
    if wait:
        escalate(run_dir, process, grace)
    else:
        threading.Thread(target=escalate, args=(run_dir, process, grace), daemon=True,
                         name=f"stop-{process.identity['pid']}").start()


def escalate(run_dir: Path, process: Process, grace: float) -> None:
    """SIGKILL a process that did not stop within `grace` seconds, then mark its run stopped."""
    try:
        if process.wait(grace):
            return
        process.send(signal.SIGKILL)
        process.wait(30.0)
        mark_ended(run_dir, process.identity, "stopped", error=None,
                   stop_reason=f"killed (SIGKILL): the step did not end within the {grace:g} s grace after "
                               f"stop; resume continues from the last checkpoint")
        runs.clear_stop(run_dir)
    finally:
        process.close()


def delete_run(run_dir: Path, settings: Settings, owner: str | None = None) -> None:
    """Delete a run folder; a running run's process is first ended for certain (verified, SIGKILL)."""
    settings = as_settings(settings)
    run_dir = require_control(run_dir, settings, owner)
    if not any((run_dir / name).exists() for name in ("config.json", "status.json", OWNER_NAME)):
        raise RunnerError(f"{run_dir} is not a run folder")
    status = runs.read_status(run_dir)
    if runs.is_active(status):
        if status.get("host") != socket.gethostname():
            raise RunnerError(f"{run_dir.name} is running on {status.get('host')}; stop it there first")
        process = run_process(run_dir, status)
        if process is None and runs.lock_holder(run_dir) is not None:
            raise RunnerError(f"{run_dir.name} is being written by a process that cannot be identified; "
                              f"not deleted")
        if process is not None:
            try:
                process.send(signal.SIGKILL)
                if not process.wait(30.0):
                    raise RunnerError(f"{run_dir.name}: its process did not end after SIGKILL; not deleted")
            finally:
                process.close()
    remove_folder(run_dir)


def shown_state(run_dir: Path, status: dict) -> str:
    """The state to show: an active run with a pending STOP request is 'stopping'."""
    if status.get("state") in ("starting", "running") and runs.stop_requested(run_dir):
        return "stopping"
    return status.get("state", "missing")


def launch(run_dir: Path, settings: Settings, steps: int | None) -> subprocess.Popen:
    """Launch the training process detached (own session, output to train.log), mark the run starting
    with the child's identity, and record its exit reason if it dies without a final status."""
    command = [sys.executable, "-m", "genlab.runner", str(run_dir.resolve())]
    if steps is not None:
        command += ["--steps", str(steps)]
    env = dict(os.environ, **settings.to_env(), PYTHONPATH=os.pathsep.join(
        p for p in (str(PACKAGE_PARENT), os.environ.get("PYTHONPATH")) if p))
    runs.clear_stop(run_dir)
    with open(run_dir / LOG_NAME, "ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                   env=env, cwd=os.getcwd(), start_new_session=True, close_fds=True)
    # The child waits for its stdin to close, so this "starting" status cannot overwrite one it wrote.
    identity = runs.process_identity(process.pid) or {"pid": process.pid}
    status = runs.read_json(run_dir / "status.json", {}) or {}
    status.update(identity, state="starting", heartbeat=time.time(), error=None, traceback=None,
                  stop_reason=None, total_steps=steps if steps is not None else
                  (runs.read_json(run_dir / "config.json") or {}).get("train", {}).get("steps"))
    status.setdefault("step", 0)
    runs.atomic_write_json(run_dir / "status.json", status)
    process.stdin.close()

    def reap():                                  # no zombie while this process lives; no UI call here
        returncode = process.wait()
        if returncode != 0 and "pid_start" in identity:
            record_exit(run_dir, identity, returncode)
    threading.Thread(target=reap, name=f"reap-{process.pid}", daemon=True).start()
    return process


def read_log(run_dir: Path, max_chars: int = 4000) -> str:
    """The end of the training process's output (train.log), for showing why a run failed."""
    try:
        text = (Path(run_dir) / LOG_NAME).read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return text[-max_chars:]


# ---------------------------------------------------------------- the training process
def main(argv: list[str] | None = None) -> int:
    """Entry point of the training process: train (or continue) the run whose folder is given."""
    from .training import train
    parser = argparse.ArgumentParser(prog="python -m genlab.runner", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--steps", type=int, help="new total number of steps")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    started = time.time()
    if not sys.stdin.closed and not sys.stdin.isatty():
        sys.stdin.read()                                         # the launcher has written "starting"
    config = runs.read_json(args.run_dir / "config.json")
    if not isinstance(config, dict) or "train" not in config:
        print(f"{args.run_dir} is not a run folder (no config.json)", file=sys.stderr)
        return 2
    if args.steps is not None:
        config["train"]["steps"] = args.steps
    limit = settings.limits.max_run_seconds
    timed_out = (lambda: time.time() - started > limit) if limit is not None else None
    watchdog = None
    if limit is not None:                  # a step that outlasts limit + grace ends the process
        watchdog = threading.Timer(max(limit - (time.time() - started), 0) + settings.limits.stop_grace_s,
                                   hard_stop, args=(args.run_dir, limit, settings.limits.stop_grace_s))
        watchdog.daemon = True
        watchdog.start()
    try:
        # A fresh folder has a config and no checkpoint: resuming it trains from step 0.
        from .cli import make_evaluator                          # eval_every > 0: genlab.eval's, handed in
        status = train(config, args.run_dir, resume=True, should_stop=timed_out,
                       evaluator=make_evaluator(config["train"]))
    except runs.RunBusy as error:                                # another process trains it: not ours to write
        print(f"refused: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001  (any failure is reported in status.json)
        mark_failed(args.run_dir, error)
        traceback.print_exc()
        return 1
    finally:
        if watchdog is not None:
            watchdog.cancel()
    if status["state"] == "stopped" and timed_out is not None and timed_out():
        mark_ended_reason(args.run_dir, f"the wall-clock limit of {limit:g} s per run was reached "
                                        f"(limit max_run_seconds); resume to continue")
    print(f"{status['state']} at step {status['step']}", file=sys.stderr)
    return 0


def hard_stop(run_dir: Path, limit: float, grace: float) -> None:
    """The wall-clock limit passed and the step did not end within the grace: mark the run and exit now
    (checkpoints are written atomically, so this is as safe as kill -9)."""
    holder = runs.lock_holder(run_dir)
    if holder is not None and holder.get("pid") == os.getpid():          # only the run's writer marks it
        with contextlib.suppress(OSError):
            runs.write_status(run_dir, "stopped", stop_reason=f"the wall-clock limit of {limit:g} s per run "
                              f"(limit max_run_seconds) passed and the step did not end within {grace:g} s; "
                              f"resume continues from the last checkpoint")
    os._exit(3)


@contextlib.contextmanager
def briefly_locked(run_dir: Path):
    """Hold the run's lock for one last write; yields False (write nothing) when another process holds it."""
    try:
        lock = runs.RunLock.acquire(run_dir, wait_s=1.0)
    except (runs.RunBusy, OSError):
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def mark_failed(run_dir: Path, error: BaseException) -> None:
    """A failure before the training loop could report it (e.g. missing data): write it, holding the lock."""
    with briefly_locked(run_dir) as held:
        if not held or (runs.read_json(run_dir / "status.json", {}) or {}).get("state") == "failed":
            return
        try:
            runs.write_status(run_dir, "failed", error=runs.failure_message(error),
                              traceback=traceback.format_exc(limit=8))
        except OSError as write_error:
            if write_error.errno != errno.ENOSPC:
                raise


def mark_ended_reason(run_dir: Path, reason: str) -> None:
    """Say why a run stopped by itself (the wall-clock limit), holding the lock."""
    with briefly_locked(run_dir) as held:
        if not held:
            return
        status = runs.read_json(run_dir / "status.json", {}) or {}
        if status.get("state") == "stopped" and status.get("pid") == os.getpid():
            runs.write_status(run_dir, "stopped", stop_reason=reason)



# ---------------------------------------------------------------- step-by-step control
def controlled_run(run_dir: Path, settings: Settings, owner: str | None) -> tuple[Path, dict, dict]:
    """(run folder, status, config) of a running run this visitor may pause, step or slow down."""
    settings = as_settings(settings)
    run_dir = require_control(run_dir, settings, owner)
    config = runs.read_json(run_dir / "config.json")
    if not isinstance(config, dict) or not isinstance(config.get("train"), dict):
        raise RunnerError(f"{run_dir.name} is not a run folder (no config.json)")
    status = runs.read_status(run_dir)
    state = shown_state(run_dir, status)
    if state != "running":
        hint = "wait until it runs" if state == "starting" else "resume it first" \
            if not runs.is_active(status) else "it ends at its next step"
        raise RunnerError(f"{run_dir.name} is {state}, not running; {hint}")
    world_size = status.get("world_size") or 1
    if world_size != 1:
        raise RunnerError(f"{run_dir.name} trains in {world_size} processes; pause and manual steps work "
                          f"for single-process runs only (stop and resume it instead)")
    return run_dir, status, config


def model_phases(config: dict) -> tuple[str, ...]:
    """The phases of the run's model (a GAN's ("D", "G")), from its class."""
    from .models import get_model_class
    return tuple(get_model_class(config["train"]["model"]).phases)


def change_control(run_dir: Path, change) -> dict:
    try:
        return runs.update_control(run_dir, change)
    except ConfigError as error:
        raise RunnerError(str(error)) from None


def pause_run(run_dir: Path, settings: Settings, owner: str | None = None) -> dict:
    """Pause a running run between steps; its process keeps the model, the optimizers and its place."""
    run_dir, _, _ = controlled_run(run_dir, settings, owner)
    return change_control(run_dir, lambda control: dict(control, mode="paused"))


def continue_run(run_dir: Path, settings: Settings, owner: str | None = None) -> dict:
    """Let a paused run train on by itself (manual steps already asked for run first)."""
    run_dir, _, _ = controlled_run(run_dir, settings, owner)
    return change_control(run_dir, lambda control: dict(control, mode="running"))


def step_run(run_dir: Path, settings: Settings, owner: str | None = None, phases=None, k: int = 1) -> dict:
    """Pause the run (if it is not) and ask for `k` manual steps of `phases` (None: all of the model's
    phases, e.g. ["D"]: a discriminator-only step); each is logged and sampled right after it."""
    run_dir, status, config = controlled_run(run_dir, settings, owner)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= runs.MAX_STEP_K:
        raise RunnerError(f"k must be a whole number of steps from 1 to {runs.MAX_STEP_K}, got {str(k)[:20]}")
    known = model_phases(config)
    if phases is not None:
        phases = [phases] if isinstance(phases, str) else list(phases)
        unknown = [str(p)[:20] for p in phases if p not in known]
        if unknown or not phases:
            what = (f"phases {', '.join(known)}" if len(known) > 1 else
                    "one phase: step it whole (no phase)")
            raise RunnerError(f"{config['train'].get('model')} has no phase {', '.join(unknown) or '(none given)'}"
                              f"; it has {what}")
        phases = None if set(phases) == set(known) else [p for p in known if p in phases]
    done = status.get("control_seq") if isinstance(status.get("control_seq"), int) else 0

    def add(control: dict) -> dict:
        waiting = [r for r in control["requests"] if r["seq"] > done]       # the process took the others
        seq = max([done, *(r["seq"] for r in control["requests"])]) + 1
        return dict(control, mode="paused", requests=[*waiting, {"seq": seq, "phases": phases, "k": k}])
    return change_control(run_dir, add)


def set_slow_motion(run_dir: Path, settings: Settings, owner: str | None = None, seconds: float = 0.0) -> dict:
    """Sleep `seconds` (0 to runs.MAX_SLOW_S; 0 turns it off) between the steps of a running run."""
    run_dir, _, _ = controlled_run(run_dir, settings, owner)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or \
            not 0.0 <= seconds <= runs.MAX_SLOW_S:
        raise RunnerError(f"slow motion must be 0 to {runs.MAX_SLOW_S:g} seconds between steps, "
                          f"got {str(seconds)[:20]}")
    return change_control(run_dir, lambda control: dict(control, slow_s=float(seconds)))


if __name__ == "__main__":
    sys.exit(main())
