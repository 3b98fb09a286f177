"""Issue 10, the run-folder and process half: each probe a hostile visitor or a crash tried, as a test.

Real training processes on the synthetic set with tiny models; no mocks except an injected ENOSPC.
"""
import errno
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

import genlab
from genlab import ConfigError, runner, runs
from genlab.checkpoint import read_checkpoint
from genlab.settings import PublicLimits, Settings
from genlab.training import train

from helpers import tiny_config, wait_for, wait_until_inactive
from picks import CONDITIONAL, GAN_PAIR, ONE_NETWORK

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
LONG = dict(steps=100000, log_every=2, sample_every=1000, checkpoint_every=1000)


def public(root: Path, **caps) -> Settings:
    return Settings(runs_root=root, public=True, limits=PublicLimits(**caps), secret="test-secret")


def visible(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) if root.exists() else []


def hold_run(run_dir: Path, ignore_sigterm: bool = False) -> subprocess.Popen:
    """A real process that claims a run (lock, status "running") and then does nothing for a long time."""
    code = textwrap.dedent(f"""
        import signal, sys, time
        from genlab import runs
        if {ignore_sigterm}:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        lock = runs.claim_run(sys.argv[1])
        runs.write_status(sys.argv[1], "running", step=3)
        print("ready", flush=True)
        time.sleep(600)
    """)
    process = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, env=ENV, text=True)
    assert process.stdout.readline().strip() == "ready"
    return process


# ---------------------------------------------------------------- processes identified, not guessed
def test_a_reused_pid_is_not_the_run_and_is_never_signalled(tmp_path):
    """status.json naming a live unrelated process (this test, a sleeper) whose start time differs."""
    root = tmp_path / "runs"
    settings = Settings(runs_root=root)
    sleeper = subprocess.Popen(["sleep", "120"])
    try:
        for pid in (os.getpid(), sleeper.pid):
            run = root / f"run-{pid}"
            train(tiny_config(ONE_NETWORK, steps=1), run)
            status = runs.read_json(run / "status.json")
            real = runs.process_identity(pid)
            status.update(real, state="running", pid_start=real["pid_start"] - 1)   # same pid, other process
            (run / "status.json").write_text(json.dumps(status))
            assert runs.pid_alive(pid) and not runs.identity_alive(status)
            assert runs.read_status(run)["state"] == "interrupted"
            with pytest.raises(runner.RunnerError, match="not running"):
                runner.stop_run(run, settings)
            runner.delete_run(run, settings)
            assert not run.exists()
        assert sleeper.poll() is None                                          # never signalled
    finally:
        sleeper.kill()
        sleeper.wait()


def test_status_records_the_process_identity(tmp_path):
    train(tiny_config(ONE_NETWORK, steps=1), tmp_path / "run")
    status = runs.read_json(tmp_path / "run" / "status.json")
    assert status["pid"] == os.getpid() and status["host"] == socket.gethostname()
    assert status["boot_id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert status["pid_start"] == int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    assert runs.identity_alive(status)


# ---------------------------------------------------------------- one writer per run
@pytest.mark.slow
def test_a_second_resume_of_a_running_run_is_refused_naming_the_holder(tmp_path):
    """Two real training processes on one folder: `python -m genlab.runner` twice, then train.py --resume."""
    run = tmp_path / "run"
    train(tiny_config(GAN_PAIR, steps=2, checkpoint_every=2), run)
    command = [sys.executable, "-m", "genlab.runner", str(run), "--steps", "100000"]
    first = subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, cwd=REPO)
    try:
        wait_for(lambda: runs.read_status(run).get("state") == "running" and runs.read_status(run)["step"] > 2,
                 what="the first process to train")
        holder = runs.lock_holder(run)
        assert holder["pid"] == first.pid and runs.identity_alive(holder)
        second = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=ENV,
                                cwd=REPO, timeout=120)
        assert second.returncode == 2
        assert f"still running (pid {first.pid} on {socket.gethostname()} since" in second.stderr
        cli = subprocess.run([sys.executable, "train.py", "--resume", str(run), "--steps", "100000",
                              "--no-progress"], capture_output=True, text=True, env=ENV, cwd=REPO, timeout=120)
        assert cli.returncode == 2 and f"pid {first.pid}" in cli.stderr and "Traceback" not in cli.stderr
        assert runs.read_status(run)["pid"] == first.pid                  # the refused ones wrote nothing
        runner.stop_run(run, Settings(runs_root=tmp_path), wait=True)
        assert first.wait(timeout=60) == 0
    finally:
        first.kill()
        first.wait()
    status = runs.read_status(run)
    # A Stop writes the STOP file, then sends SIGTERM: whichever the loop sees first is the reason.
    assert status["state"] == "stopped" and status["stop_reason"] in ("SIGTERM", "stop requested")
    logged = [r["step"] for r in runs.read_metrics(run)]
    assert logged == sorted(set(logged))                                 # no duplicated, out-of-order lines


def test_leftover_temporary_files_are_cleaned_on_the_next_start(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(ONE_NETWORK, steps=2), run)
    leftovers = [run / ".status.json.k1l2.tmp", run / "samples" / ".step_000002.png.abcd.tmp",
                 run / "checkpoints" / ".latest.safetensors.x9.tmp"]
    for path in leftovers:
        path.write_bytes(b"half written")
    assert genlab.resume(run, steps=4)["state"] == "finished"
    assert not any(path.exists() for path in leftovers)


@pytest.mark.slow
def test_a_kill_during_start_up_leaves_an_interrupted_run_that_resumes(tmp_path):
    """kill -9 of the training process at once and after a moment; and of the launcher mid-folder."""
    root = tmp_path / "runs"
    settings = Settings(runs_root=root)
    config = {"train": dict(tiny_config(GAN_PAIR)["train"], steps=4), "model": tiny_config(GAN_PAIR)["model"]}
    for delay in (0.0, 1.0):
        run = runner.start_run(config, settings)
        time.sleep(delay)
        os.kill(runs.read_status(run)["pid"], signal.SIGKILL)
        status = wait_until_inactive(run)
        assert status["state"] == "interrupted"
        wait_for(lambda: "SIGKILL" in (runs.read_status(run).get("error") or ""), what="the exit reason")
        assert run in [info.path for info in runs.list_runs(root)]
    half_made = root / f"{runner.NEW_PREFIX}killed"                      # the launcher died while making one
    half_made.mkdir()
    (half_made / "config.json").write_text("{}")
    assert all(info.path != half_made for info in runs.list_runs(root))
    runner.resume_run(run, settings)
    assert wait_until_inactive(run)["state"] == "finished", runner.read_log(run)
    assert not half_made.exists()                                        # cleaned by the next start


@pytest.mark.slow
def test_random_kill_9_leaves_interrupted_runs_that_resume_bit_exactly(tmp_path):
    """Crash safety stays: a killed run shows as interrupted and, resumed, equals a straight run."""
    config = tiny_config(GAN_PAIR, steps=200, log_every=2, sample_every=100, checkpoint_every=2)
    straight = tmp_path / "straight"
    train(config, straight)
    root = tmp_path / "runs"
    settings = Settings(runs_root=root)
    run = runner.start_run(config, settings)
    wait_for(lambda: runs.read_status(run).get("step", 0) >= 4 or not runs.is_active(runs.read_status(run)),
             what="a few steps")
    os.kill(runs.read_status(run)["pid"], signal.SIGKILL)
    status = wait_until_inactive(run)
    if status["state"] == "finished":
        pytest.skip("the run finished before the kill on this machine")
    assert status["state"] == "interrupted"
    assert genlab.resume(run)["state"] == "finished"
    _, a = read_checkpoint(runs.checkpoint_path(straight))
    _, b = read_checkpoint(runs.checkpoint_path(run))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a if not k.startswith("rng."))


# ---------------------------------------------------------------- honest terminal states
def test_disk_full_is_the_failed_status_error(tmp_path, monkeypatch):
    """An injected ENOSPC: metrics cannot be appended, and nothing else fits while the reserve exists."""
    run = tmp_path / "run"
    full = {"now": False}
    original_write = runs.atomic_write_bytes

    def append_metrics(run_dir, record):
        full["now"] = True
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(run_dir) / "metrics.jsonl"))

    def atomic_write_bytes(path, data):
        if full["now"] and (run / runs.RESERVE_NAME).exists():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        original_write(path, data)

    monkeypatch.setattr(runs, "append_metrics", append_metrics)
    monkeypatch.setattr(runs, "atomic_write_bytes", atomic_write_bytes)
    with pytest.raises(OSError):
        train(tiny_config(ONE_NETWORK, steps=10), run)
    status = runs.read_status(run)
    assert status["state"] == "failed" and status["error"].startswith("disk full (ENOSPC)")
    assert not (run / runs.RESERVE_NAME).exists()


def test_disk_full_on_a_real_small_tmpfs(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        run = disk / "run"
        with pytest.raises(OSError) as raised:
            train(tiny_config(GAN_PAIR, steps=100000, log_every=1, sample_every=1, checkpoint_every=1), run)
        assert raised.value.errno == errno.ENOSPC
        status = runs.read_status(run)
        assert status["state"] == "failed" and status["error"].startswith("disk full (ENOSPC)")
        assert runs.checkpoint_path(run).exists()                     # the last complete checkpoint is kept
    finally:
        subprocess.run(["umount", str(disk)], check=True)


# ---------------------------------------------------------------- a public server binds cost
def test_caps_are_refused_naming_the_limit_before_any_folder(tmp_path):
    root = tmp_path / "runs"
    settings = Settings(runs_root=root, public=True, limits=PublicLimits.public_defaults(), secret="s")
    owner = runner.new_owner_token(settings)
    base = tiny_config(GAN_PAIR, sample_every=100, checkpoint_every=100)
    asks = {"max_steps": dict(steps=5000), "max_batch_size": dict(batch_size=512),
            "min_sample_every": dict(sample_every=1), "min_checkpoint_every": dict(checkpoint_every=1),
            "builtin_data_only": dict(data_root=str(tmp_path / "elsewhere"))}
    for limit, train_values in asks.items():
        config = {"train": dict(base["train"], **train_values), "model": base["model"]}
        with pytest.raises(runner.RunnerError, match=limit):
            runner.start_run(config, settings, owner)
    for train_values in (dict(data_path="/etc"), dict(dataset="imagefolder", data_path=str(tmp_path))):
        with pytest.raises(runner.RunnerError, match="builtin_data_only"):
            runner.check_config({"train": dict(base["train"], **train_values), "model": base["model"]}, settings)
    wide = {"train": dict(base["train"], image_size=64), "model": dict(base["model"], g_channels=512,
                                                                       d_channels=512)}
    with pytest.raises(runner.RunnerError, match="max_parameters"):
        runner.start_run(wide, settings, owner)
    small_images = Settings(runs_root=root, public=True, limits=PublicLimits(max_image_size=28))
    with pytest.raises(runner.RunnerError, match="max_image_size"):
        runner.check_config({"train": dict(base["train"], image_size=32), "model": base["model"]}, small_images)
    for mismatch in (dict(dataset="mnist", image_size=64), dict(image_size=40)):      # refused locally too
        with pytest.raises(ConfigError):
            runner.start_run({"train": dict(base["train"], **mismatch), "model": base["model"]},
                             Settings(runs_root=root))
    assert visible(root) == []


def test_parameters_are_counted_without_building_the_model(tmp_path):
    config = tiny_config(CONDITIONAL)
    counted = runner.count_parameters(config, runner.data_shape(config["train"]))
    built = genlab.build_model(CONDITIONAL, dict(config["model"], channels=1, image_size=28, num_classes=10))
    assert counted == sum(p.numel() for p in built.parameters())


def test_the_active_run_cap_holds_against_simultaneous_starts(tmp_path):
    """5 threads call start_run at once; exactly max_active_runs runs exist."""
    root = tmp_path / "runs"
    settings = public(root, max_active_runs=2)
    config = tiny_config(GAN_PAIR, **LONG)
    barrier, started, refused = threading.Barrier(5), [], []

    def start():
        owner = runner.new_owner_token(settings)
        barrier.wait()
        try:
            started.append((runner.start_run(config, settings, owner), owner))
        except runner.RunnerError as error:
            refused.append(str(error))

    threads = [threading.Thread(target=start) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert len(started) == 2 and len(refused) == 3
        assert all("max_active_runs" in message for message in refused)
        assert len(visible(root)) == 2 and len(runner.active_runs(root)) == 2
    finally:
        for run_dir, owner in started:
            runner.delete_run(run_dir, settings, owner)
    assert visible(root) == []


def test_each_visitor_controls_only_their_own_runs(tmp_path):
    root = tmp_path / "runs"
    settings = Settings(runs_root=root, public=True, limits=PublicLimits(max_active_runs=1))   # no secret set
    alice, bob = runner.new_owner_token(settings), runner.new_owner_token(settings)
    secret = root / runner.SECRET_NAME
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    forged = alice.split(".")[0] + "." + "0" * 64
    run = runner.start_run(tiny_config(GAN_PAIR, **LONG), settings, alice)
    try:
        assert alice not in "".join(p.read_text(errors="replace") for p in run.iterdir() if p.is_file())
        assert runner.can_control(run, settings, alice)
        for intruder in (bob, forged, None, "", "not.a-token"):
            assert not runner.can_control(run, settings, intruder)
            for action in (lambda: runner.stop_run(run, settings, intruder),
                           lambda: runner.resume_run(run, settings, intruder, steps=10),
                           lambda: runner.delete_run(run, settings, intruder)):
                with pytest.raises(runner.RunnerError, match="belongs to another visitor"):
                    action()
        with pytest.raises(runner.RunnerError, match="visitor session"):
            runner.start_run(tiny_config(GAN_PAIR, **LONG), settings, forged)
        with pytest.raises(runner.RunnerError, match="no such run"):
            runner.delete_run(tmp_path, settings, alice)                     # outside the runs root
        assert runs.is_active(runs.read_status(run))                          # everyone can still watch it
        assert runner.can_control(run, Settings(runs_root=root), None)       # locally, everything is allowed
    finally:
        runner.delete_run(run, settings, alice)
    assert not run.exists()


@pytest.mark.slow
def test_oldest_finished_public_runs_are_evicted_never_a_running_one(tmp_path):
    root = tmp_path / "runs"
    settings = public(root, max_stored_runs=4)
    owner = runner.new_owner_token(settings)
    names = ["a-running", "b-finished", "c-finished", "d-local"]
    for age, name in enumerate(names):
        run = root / name
        train(tiny_config(ONE_NETWORK, steps=1), run)
        if name != "d-local":                                               # train.py runs are nobody's
            runs.atomic_write_json(run / runner.OWNER_NAME, {"owner_sha256": runner.owner_hash(owner)})
        os.utime(run / "config.json", (1e9 + age, 1e9 + age))
    holder = hold_run(root / "a-running")                                  # oldest, but alive
    try:
        run = runner.start_run(tiny_config(GAN_PAIR, **LONG), settings, owner)
        try:
            assert visible(root) == sorted(["a-running", "c-finished", "d-local", run.name])
            used = runs.folder_bytes(root)
            with runner.root_lock(root):
                runner.make_room(root, public(root, max_stored_bytes=used - 1))
            assert visible(root) == sorted(["a-running", "d-local", run.name])
            with pytest.raises(runner.RunnerError, match="max_stored_runs"):   # nothing left to evict
                with runner.root_lock(root):
                    runner.make_room(root, public(root, max_stored_runs=1))
        finally:
            runner.delete_run(run, settings, owner)
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_stop_escalates_to_sigkill_and_delete_ends_the_process_first(tmp_path):
    """A process that ignores SIGTERM and never reads STOP (a very long step)."""
    root = tmp_path / "runs"
    settings = Settings(runs_root=root, limits=PublicLimits(stop_grace_s=1.0))
    run = root / "run"
    train(tiny_config(ONE_NETWORK, steps=1), run)
    stubborn = hold_run(run, ignore_sigterm=True)
    try:
        runner.stop_run(run, settings, wait=True)
        assert stubborn.wait(timeout=30) == -signal.SIGKILL
        status = runs.read_status(run)
        assert status["state"] == "stopped" and "SIGKILL" in status["stop_reason"]
        assert not runs.stop_requested(run)
        assert genlab.resume(run, steps=2)["state"] == "finished"          # from its last checkpoint

        stubborn = hold_run(run, ignore_sigterm=True)
        runner.delete_run(run, settings)
        assert stubborn.wait(timeout=30) == -signal.SIGKILL and not run.exists()
    finally:
        stubborn.kill()
        stubborn.wait()


@pytest.mark.slow
def test_a_run_stops_itself_at_the_wall_clock_limit(tmp_path):
    root = tmp_path / "runs"
    settings = Settings(runs_root=root, limits=PublicLimits(max_run_seconds=1.0))
    run = runner.start_run(tiny_config(GAN_PAIR, **LONG), settings)
    assert wait_until_inactive(run)["state"] == "stopped", runner.read_log(run)
    wait_for(lambda: "max_run_seconds" in runs.read_status(run)["stop_reason"], what="the reason")  # just after
    assert runs.read_status(run)["state"] == "stopped" and runs.checkpoint_path(run).exists()


@pytest.mark.slow
def test_a_step_that_outlasts_the_wall_clock_limit_ends_the_process(tmp_path):
    """A training step that never ends: the process marks the run stopped and exits after limit + grace
    (the limit leaves start-up time, so the hanging step is what outlasts it)."""
    run = tmp_path / "run"
    train(tiny_config(ONE_NETWORK, steps=1), run)
    code = textwrap.dedent("""
        import sys, time
        import genlab.models.vae as vae
        from genlab import runner
        vae.VAE.training_step = lambda *args, **kwargs: time.sleep(600)
        sys.exit(runner.main([sys.argv[1], "--steps", "5"]))
    """)
    env = dict(ENV, GENLAB_MAX_RUN_SECONDS="10", GENLAB_STOP_GRACE_S="1")
    done = subprocess.run([sys.executable, "-c", code, str(run)], stdin=subprocess.DEVNULL, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    status = runs.read_status(run)
    assert status["state"] == "stopped" and "max_run_seconds" in status["stop_reason"]
    assert genlab.resume(run, steps=2)["state"] == "finished"
