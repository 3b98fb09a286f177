"""The `genlab` command in-process (genlab.cli.main), and one subprocess: SIGTERM stops a run with a checkpoint."""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import genlab
from genlab import MODELS, runs
from genlab.checkpoint import read_checkpoint
from genlab.cli import main
from genlab.settings import Settings
from picks import CONDITIONAL, GAN_PAIR, ONE_NETWORK, WITH_CODES

REPO = Path(__file__).resolve().parents[1]
TINY = ["--z-dim", "8", "--g-channels", "8", "--d-channels", "8"]
TINY_VAE = ["--z-dim", "4", "--width", "8", "--hidden", "32"]


def genlab_cli(capsys, *argv, settings=None):
    """(exit code, stdout, stderr) of `genlab ARGV`, run in this process."""
    code = main([str(a) for a in argv], settings=settings)
    out, err = capsys.readouterr()
    return code, out, err


def tiny_vae_run(capsys, run, steps=1):
    code, _, err = genlab_cli(capsys, "train", "--model", ONE_NETWORK, "--dataset", "synthetic", "--steps", steps,
                              "--device", "cpu", "--run-dir", run, "--no-progress", *TINY_VAE)
    assert code == 0, err


def test_train_then_resume(tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = genlab_cli(capsys, "train", "--model", CONDITIONAL, "--dataset", "synthetic", "--steps", 4,
                              "--batch-size", 8, "--log-every", 2, "--sample-every", 2, "--device", "cpu",
                              "--run-dir", run, "--no-progress", *TINY)
    assert code == 0, err
    assert "finished at step 4" in err
    assert [r["step"] for r in runs.read_metrics(run)] == [2, 4]
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["g_channels"] == 8 and config["train"]["dataset"] == "synthetic"
    assert (run / "samples" / "step_000004.png").exists()

    code, _, err = genlab_cli(capsys, "resume", run, "--steps", 6, "--no-progress")
    assert code == 0, err
    assert [r["step"] for r in runs.read_metrics(run)] == [2, 4, 6]
    assert runs.read_status(run)["state"] == "finished"


def test_new_runs_go_under_the_settings_roots(tmp_path, capsys):
    settings = Settings(runs_root=tmp_path / "runs", data_root=tmp_path / "data")
    code, _, err = genlab_cli(capsys, "train", "--model", ONE_NETWORK, "--dataset", "synthetic", "--steps", 1,
                              "--device", "cpu", "--no-progress", *TINY_VAE, settings=settings)
    assert code == 0, err
    (folder,) = (tmp_path / "runs").iterdir()
    assert folder.name.endswith("-vae-synthetic")
    assert json.loads((folder / "config.json").read_text())["train"]["data_root"] == str(tmp_path / "data")
    code, _, err = genlab_cli(capsys, "train", "--model", ONE_NETWORK, "--dataset", "synthetic", "--steps", 1,
                              "--device", "cpu", "--no-progress", "--runs-root", tmp_path / "other", *TINY_VAE,
                              settings=settings)
    assert code == 0 and len(list((tmp_path / "other").iterdir())) == 1       # a flag wins over the settings


def test_list_models_and_help(capsys):
    code, out, _ = genlab_cli(capsys, "train", "--list-models")
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == sorted(MODELS)
    code, out, _ = genlab_cli(capsys, "train", "--model", WITH_CODES, "--help")
    assert code == 0
    for flag in ["--lambda-cat", "--continuous-codes", "--r1-gamma", "--loss", "--steps", "--resume", "--debug"]:
        assert flag in out
    assert "--image-size" in out and "--num-classes" not in out
    code, out, _ = genlab_cli(capsys, "--help")
    assert code == 0 and all(f"genlab {command}" in out for command in
                             ("train", "resume", "eval", "serve", "explore", "hub", "export"))


def refused(capsys, *argv, settings=None) -> str:
    """The one stderr line of a refused command (exit code 2, no traceback)."""
    code, _, err = genlab_cli(capsys, *argv, settings=settings)
    assert code == 2, (argv, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (argv, err)
    return err


def test_user_errors_are_one_line_and_exit_code_2_before_any_work(tmp_path, capsys):
    settings = Settings(runs_root=tmp_path / "runs", data_root=tmp_path / "data")
    for argv, message in [
        (["nonsense"], "unknown command 'nonsense'"),
        (["train", "--model", GAN_PAIR, "--bogus", "1"], "unrecognized arguments: --bogus"),
        (["train", "--model", "nope"], "unknown model 'nope'"),
        (["train", "--model", GAN_PAIR, "--loss", "wgan"], "invalid choice: 'wgan'"),
        (["train", "--model", GAN_PAIR, "--r1-gamma", "-2"], "r1_gamma must be >= 0"),
        (["train", "--model", GAN_PAIR, "--steps", "many"], "invalid int value"),
        (["train", "--model", GAN_PAIR, "--categories", "3"], "unrecognized arguments: --categories"),
        (["train", "--model", GAN_PAIR, "--dataset", "mnist", "--data-root", tmp_path / "nodata"], "MNIST is not in"),
        (["train", "--model", GAN_PAIR, "--dataset", "imagefolder", "--data-path", tmp_path / "missing"],
         "no images (.jpg, .png, ...) found under"),
        (["train", "--model", GAN_PAIR, "--dataset", "synthetic", "--device", "cpu", "--amp", "bf16"],
         "amp 'bf16' is for CUDA"),
        (["train", "--resume", tmp_path / "nothing"], "not a run folder"),
        (["resume", tmp_path / "nothing"], "not a run folder"),
        (["resume"], "give the run folder"),
        (["export", tmp_path / "nothing.safetensors", tmp_path / "out.safetensors"], "does not exist"),
    ]:
        assert message in refused(capsys, *argv, settings=settings), argv
    assert not (tmp_path / "runs").exists()          # nothing was started


def test_a_taken_run_folder_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    tiny_vae_run(capsys, run)
    assert "already holds a run" in refused(capsys, "train", "--model", ONE_NETWORK, "--dataset", "synthetic",
                                            "--device", "cpu", "--run-dir", run, *TINY_VAE)
    assert "can change only" in refused(capsys, "resume", run, "--z-dim", "7")
    assert "can change only" in refused(capsys, "resume", run, "--seed", "5")
    writer = runs.RunLock.acquire(run)                             # another writer holds the run
    try:
        assert "still running" in refused(capsys, "resume", run, "--steps", "3")
    finally:
        writer.release()


def test_a_bad_checkpoint_is_one_line_and_the_run_is_marked_failed(tmp_path, capsys):
    run = tmp_path / "run"
    tiny_vae_run(capsys, run, steps=2)
    checkpoint = runs.checkpoint_path(run)
    good = checkpoint.read_bytes()
    checkpoint.write_bytes(good[: len(good) // 2])                             # truncated
    assert "corrupt or truncated" in refused(capsys, "resume", run, "--steps", "4")
    assert runs.read_status(run)["state"] == "failed"
    (tmp_path / "good.safetensors").write_bytes(good)
    genlab.export_checkpoint(tmp_path / "good.safetensors", checkpoint)        # weights only: no optimizer state
    assert "no state for optimizer" in refused(capsys, "resume", run, "--steps", "4")


def test_a_diverged_run_is_one_line_and_exit_code_1(tmp_path, capsys, monkeypatch):
    original = genlab.models.vae.VAE.training_step

    def exploding(self, *args, **kwargs):
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.fill_(float("nan"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(genlab.models.vae.VAE, "training_step", exploding)
    code, _, err = genlab_cli(capsys, "train", "--model", ONE_NETWORK, "--dataset", "synthetic", "--steps", 2,
                              "--device", "cpu", "--run-dir", tmp_path / "run", "--no-progress", *TINY_VAE)
    assert code == 1 and "diverged" in err and len(err.strip().splitlines()) == 2, err   # run folder + error
    assert runs.read_status(tmp_path / "run")["state"] == "failed"


def test_debug_shows_the_error_itself(tmp_path, capsys):
    with pytest.raises(genlab.ConfigError, match="not a run folder"):
        main(["resume", str(tmp_path / "nothing"), "--debug"])


def test_export_drops_what_sampling_does_not_need(tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = genlab_cli(capsys, "train", "--model", GAN_PAIR, "--dataset", "synthetic", "--steps", 1,
                              "--batch-size", 8, "--device", "cpu", "--run-dir", run, "--no-progress", *TINY)
    assert code == 0, err
    code, out, err = genlab_cli(capsys, "export", run, tmp_path / "small.safetensors")
    assert code == 0, err
    header, tensors = read_checkpoint(tmp_path / "small.safetensors")
    assert header["dropped"] == sorted(MODELS[GAN_PAIR].training_only) and header["step"] == 1
    assert not any(k.startswith(("optim.", "rng.")) for k in tensors)
    assert genlab.load(tmp_path / "small.safetensors").sample(2).shape == (2, 1, 28, 28)
    code, out, err = genlab_cli(capsys, "export", run, tmp_path / "int8.safetensors", "--int8", 256)
    assert code == 0, err
    _, quantized = read_checkpoint(tmp_path / "int8.safetensors")
    assert any(t.dtype == torch.int8 for t in quantized.values()) and any(k.startswith("scale.") for k in quantized)
    assert genlab.load(tmp_path / "int8.safetensors").sample(2).shape == (2, 1, 28, 28)
    code, _, err = genlab_cli(capsys, "export", run, tmp_path / "x.safetensors", "--int8", 0)
    assert code == 2 and "--int8 takes a positive number" in err and not (tmp_path / "x.safetensors").exists()


@pytest.mark.slow
def test_sigterm_stops_a_run_with_a_checkpoint(tmp_path):
    """A real process (train.py, the thin shim): SIGTERM ends the step, saves a checkpoint, exits 0."""
    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "train.py", "--model", ONE_NETWORK, "--dataset", "synthetic", "--steps", "100000",
         "--batch-size", "8", "--log-every", "5", *TINY_VAE, "--device", "cpu", "--run-dir", str(run),
         "--no-progress"], cwd=REPO, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not runs.read_metrics(run):
        time.sleep(0.2)
    assert runs.read_metrics(run), "no metrics written within 60 s"
    process.terminate()
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    status = runs.read_status(run)
    assert status["state"] == "stopped" and status["stop_reason"] == "SIGTERM"
    header, _ = read_checkpoint(runs.checkpoint_path(run))
    assert header["step"] == status["step"] > 0
