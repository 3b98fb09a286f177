"""train.py end to end on the synthetic set, and its refusals before any work starts."""
import json
import subprocess
import sys
from pathlib import Path

from genlab import runs

REPO = Path(__file__).resolve().parents[1]
TINY = ["--z-dim", "8", "--g-channels", "8", "--d-channels", "8"]


def run_cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_cli_trains_and_resumes_on_the_synthetic_set(tmp_path):
    run = tmp_path / "run"
    done = run_cli("--model", "cgan", "--dataset", "synthetic", "--steps", "4", "--batch-size", "8",
                   "--log-every", "2", "--sample-every", "2", "--device", "cpu", "--run-dir", str(run), *TINY)
    assert done.returncode == 0, done.stderr
    assert "finished at step 4" in done.stderr
    assert [r["step"] for r in runs.read_metrics(run)] == [2, 4]
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["g_channels"] == 8 and config["train"]["dataset"] == "synthetic"
    assert (run / "samples" / "step_000004.png").exists()

    resumed = run_cli("--resume", str(run), "--steps", "6", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert [r["step"] for r in runs.read_metrics(run)] == [2, 4, 6]
    assert runs.read_status(run)["state"] == "finished"


def test_cli_default_run_folder_goes_under_runs_root(tmp_path):
    done = run_cli("--model", "vae", "--dataset", "synthetic", "--steps", "1", "--z-dim", "2",
                   "--width", "8", "--hidden", "16", "--runs-root", str(tmp_path), "--no-progress")
    assert done.returncode == 0, done.stderr
    (folder,) = tmp_path.iterdir()
    assert folder.name.endswith("-vae-synthetic") and (folder / "config.json").exists()


def test_list_models():
    done = run_cli("--list-models")
    assert done.returncode == 0
    assert [line.split()[0] for line in done.stdout.splitlines()] == ["cgan", "dcgan", "gan", "infogan", "vae"]


def test_unknown_and_invalid_options_are_refused_before_work(tmp_path):
    for args, message in [
        (["--model", "dcgan", "--bogus", "1"], "unrecognized arguments: --bogus"),
        (["--model", "nope"], "unknown model 'nope'"),
        (["--model", "dcgan", "--loss", "wgan"], "invalid choice: 'wgan'"),
        (["--model", "dcgan", "--r1-gamma", "-2"], "r1_gamma must be >= 0"),
        (["--model", "dcgan", "--steps", "many"], "invalid int value"),
        (["--model", "gan", "--categories", "3"], "unrecognized arguments: --categories"),
        (["--model", "dcgan", "--dataset", "mnist", "--data-root", str(tmp_path / "nodata")],
         "MNIST is not in"),
        (["--model", "dcgan", "--dataset", "imagefolder", "--data-path", str(tmp_path / "missing")],
         "does not exist"),
        (["--resume", str(tmp_path / "nothing")], "not a run folder"),
    ]:
        done = run_cli(*args, "--runs-root", str(tmp_path / "runs"))
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
    assert not (tmp_path / "runs").exists()          # nothing was started


def test_help_lists_model_fields():
    done = run_cli("--model", "infogan", "--help")
    assert done.returncode == 0
    for flag in ["--lambda-cat", "--continuous-codes", "--r1-gamma", "--loss", "--steps", "--resume"]:
        assert flag in done.stdout
    assert "--image-size" in done.stdout and "--num-classes" not in done.stdout
