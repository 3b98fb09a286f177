"""The training loop: the run folder it writes, resume equivalence, stop requests, divergence."""
import json
import os
import subprocess
import sys
import time

import pytest
import torch

import genlab
from genlab import runs
from genlab.checkpoint import read_checkpoint
from genlab.training import train

from helpers import tiny_config


def model_tensors(run_dir):
    _, tensors = read_checkpoint(runs.checkpoint_path(run_dir))
    return {k: v for k, v in tensors.items() if not k.startswith("rng.")}


def test_run_folder_is_complete(tmp_path):
    events = []
    status = train(tiny_config("dcgan", steps=4), tmp_path / "run", on_event=lambda k, p: events.append(k))
    run = tmp_path / "run"
    assert status["state"] == "finished" and status["step"] == 4
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["model"] == "dcgan" and config["model"]["image_size"] == 28
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [2, 4]
    assert {"loss/d", "loss/g", "d/real", "d/fake", "r1/grad_norm", "images_per_s", "epoch", "time"} <= set(lines[0])
    assert [s for s, _ in runs.list_samples(run)] == [2, 4]
    assert runs.checkpoint_path(run).exists()
    saved = json.loads((run / "status.json").read_text())
    assert saved["state"] == "finished" and saved["pid"] == os.getpid() and saved["heartbeat"] > 0
    assert events[0] == "start" and events[-1] == "end" and {"log", "sample", "checkpoint"} <= set(events)


@pytest.mark.parametrize("model", ["dcgan", "gan", "infogan", "vae"])
def test_resume_equivalence(tmp_path, model):
    """N steps, stop, N resumed steps == 2N steps straight (same seed, CPU)."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(tiny_config(model, steps=6, log_every=3, checkpoint_every=3), straight)
    train(tiny_config(model, steps=3, log_every=3, checkpoint_every=3), split)
    status = genlab.resume(split, steps=6)
    assert status["state"] == "finished" and status["step"] == 6
    a, b = model_tensors(straight), model_tensors(split)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    straight_metrics = runs.read_metrics(straight)
    split_metrics = runs.read_metrics(split)
    assert [r["step"] for r in split_metrics] == [3, 6]
    assert [r.get("loss/g", r.get("loss/total")) for r in split_metrics] == \
           [r.get("loss/g", r.get("loss/total")) for r in straight_metrics]


def test_stop_hook_ends_with_a_checkpoint_and_resume_continues(tmp_path):
    calls = {"n": 0}

    def should_stop():
        calls["n"] += 1
        return calls["n"] > 3

    status = train(tiny_config("vae", steps=50, checkpoint_every=100), tmp_path / "run", should_stop=should_stop)
    assert status["state"] == "stopped" and status["step"] == 3
    header, _ = read_checkpoint(runs.checkpoint_path(tmp_path / "run"))
    assert header["step"] == 3
    status = genlab.resume(tmp_path / "run", steps=5)
    assert status["state"] == "finished" and status["step"] == 5


def test_stop_file_is_honoured_and_cleared(tmp_path):
    run = tmp_path / "run"
    seen = []

    def on_event(kind, payload):
        if kind == "log" and payload["step"] == 2:
            runs.request_stop(run)
        seen.append(kind)

    status = train(tiny_config("gan", steps=100), run, on_event=on_event)
    assert status["state"] == "stopped" and status["step"] == 2
    assert not runs.stop_requested(run)


def test_sigterm_stops_a_cli_run_gracefully(tmp_path):
    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "train.py", "--model", "vae", "--dataset", "synthetic", "--steps", "100000",
         "--batch-size", "8", "--log-every", "5", "--z-dim", "4", "--width", "8", "--hidden", "32",
         "--device", "cpu", "--run-dir", str(run), "--no-progress"],
        cwd=os.path.dirname(os.path.dirname(__file__)), stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not runs.read_metrics(run):
        time.sleep(0.2)
    assert runs.read_metrics(run), "no metrics written within 60 s"
    process.terminate()
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    status = runs.read_status(run)
    assert status["state"] == "stopped" and status["stop_reason"] == "SIGTERM"
    assert runs.checkpoint_path(run).exists()


def test_nan_loss_fails_the_run_with_a_message(tmp_path, monkeypatch):
    """A learning rate far too high drives the weights to inf; the run ends as failed, saying why."""
    config = tiny_config("vae", steps=200, log_every=10)
    config["model"]["lr"] = 1.0e0
    run = tmp_path / "run"
    original = genlab.models.vae.VAE.training_step

    def exploding(self, next_batch, *args, **kwargs):
        with torch.no_grad():
            self.decoder.convs[-1].weight.mul_(1e30)         # overflow to inf within a few steps
        return original(self, next_batch, *args, **kwargs)

    monkeypatch.setattr(genlab.models.vae.VAE, "training_step", exploding)
    with pytest.raises(genlab.TrainingDiverged, match="became (nan|inf)"):
        train(config, run)
    status = runs.read_status(run)
    assert status["state"] == "failed" and "diverged" in status["error"]


def test_dead_process_shows_as_interrupted_and_can_resume(tmp_path):
    run = tmp_path / "run"
    train(tiny_config("vae", steps=2), run)
    runs.write_status(run, "running", step=2)
    status = json.loads((run / "status.json").read_text())
    status["pid"] = 2 ** 22 + 12345                     # no such process
    (run / "status.json").write_text(json.dumps(status))
    assert runs.read_status(run)["state"] == "interrupted"
    assert genlab.resume(run, steps=4)["state"] == "finished"


def test_resume_rewinds_metrics_and_samples_to_the_checkpoint(tmp_path):
    """A crash after step 4's logs with the newest checkpoint at step 2: resume redoes 3 and 4 once."""
    run = tmp_path / "run"
    saved = tmp_path / "step2.safetensors"

    def keep_step_2(kind, payload):
        if kind == "checkpoint" and payload["step"] == 2:
            saved.write_bytes(runs.checkpoint_path(run).read_bytes())

    train(tiny_config("vae", steps=4, checkpoint_every=2, log_every=1, sample_every=1), run, on_event=keep_step_2)
    os.replace(saved, runs.checkpoint_path(run))
    assert genlab.resume(run, steps=6)["state"] == "finished"
    assert [r["step"] for r in runs.read_metrics(run)] == [1, 2, 3, 4, 5, 6]
    assert [s for s, _ in runs.list_samples(run)] == [1, 2, 3, 4, 5, 6]


def test_a_running_run_is_not_resumed_twice(tmp_path):
    run = tmp_path / "run"
    train(tiny_config("vae", steps=1), run)
    writer = runs.RunLock.acquire(run)                              # another writer holds the run
    try:
        with pytest.raises(genlab.ConfigError, match="still running"):
            genlab.resume(run, steps=2)
    finally:
        writer.release()


def test_existing_run_folder_is_not_overwritten(tmp_path):
    train(tiny_config("vae", steps=1), tmp_path / "run")
    with pytest.raises(genlab.ConfigError, match="already holds a run"):
        train(tiny_config("vae", steps=1), tmp_path / "run")


def test_resume_refuses_model_changes(tmp_path):
    train(tiny_config("vae", steps=1), tmp_path / "run")
    changed = tiny_config("vae", steps=2)
    changed["model"]["z_dim"] = 7
    with pytest.raises(genlab.ConfigError, match="can change only"):
        train(changed, tmp_path / "run", resume=True)


def test_mnist_trains_from_the_shared_folder(tmp_path, mnist_data_root):
    status = train(tiny_config("dcgan", dataset="mnist", data_root=str(mnist_data_root), steps=2), tmp_path / "run")
    assert status["state"] == "finished"
    header, _ = read_checkpoint(runs.checkpoint_path(tmp_path / "run"))
    assert header["num_images"] == 60000 and header["dataset"] == "mnist"


def test_a_stop_requested_while_starting_is_honoured(tmp_path):
    """A STOP written before the loop runs (the dashboard's Stop during start-up) is not lost."""
    run = tmp_path / "run"
    run.mkdir()
    runs.request_stop(run)
    status = train(tiny_config("vae", steps=50), run)
    assert status["state"] == "stopped" and status["step"] == 0
    assert runs.checkpoint_path(run).exists() and not runs.stop_requested(run)
