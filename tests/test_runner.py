"""The run manager: a real tiny training process on the synthetic set, started, watched, stopped, resumed."""
import pytest

from genlab import ConfigError, runner, runs
from genlab.settings import PublicLimits, Settings
from helpers import wait_for, wait_until_inactive
from picks import GAN_PAIR

TINY = {"train": dict(model=GAN_PAIR, dataset="synthetic", image_size=28, steps=100000, batch_size=8,
                      log_every=2, sample_every=4, checkpoint_every=1000, device="cpu"),
        "model": dict(g_channels=4, d_channels=4, z_dim=8)}


@pytest.mark.slow
def test_start_watch_stop_resume_delete(tmp_path):
    root = tmp_path / "runs"
    settings = Settings(runs_root=root)
    run_dir = runner.start_run(TINY, settings)
    try:
        assert [info.path for info in runs.list_runs(root)] == [run_dir]       # listed at once
        assert runs.read_status(run_dir)["state"] == "starting"
        wait_for(lambda: len(runs.read_metrics(run_dir)) >= 2, what="metrics")
        grown = len(runs.read_metrics(run_dir))
        wait_for(lambda: len(runs.read_metrics(run_dir)) > grown, what="metrics to grow")
        assert runs.read_status(run_dir)["state"] == "running"
        with pytest.raises(runner.RunnerError, match="stop it before resuming"):
            runner.resume_run(run_dir, settings)

        runner.stop_run(run_dir, settings)
        assert runner.shown_state(run_dir, runs.read_status(run_dir)) == "stopping"
        stopped = wait_until_inactive(run_dir)
        assert stopped["state"] == "stopped" and stopped["error"] is None
        assert runs.checkpoint_path(run_dir).exists()
        step = stopped["step"]

        runner.resume_run(run_dir, settings, steps=step + 6)
        assert runs.is_active(runs.read_status(run_dir))
        finished = wait_until_inactive(run_dir)
        assert finished["state"] == "finished", runner.read_log(run_dir)
        assert finished["step"] == step + 6
        logged = [r["step"] for r in runs.read_metrics(run_dir)]
        assert logged == sorted(set(logged)) and logged[-1] == step + 6        # continued, not restarted
    finally:
        if run_dir.exists() and runs.is_active(runs.read_status(run_dir)):
            runner.stop_run(run_dir, settings)
            wait_until_inactive(run_dir)
    runner.delete_run(run_dir, settings)
    assert not run_dir.exists()


@pytest.mark.slow
def test_a_failing_run_is_reported_with_its_error_and_can_be_resumed(tmp_path):
    pictures = tmp_path / "pictures"                 # found by the data check, but not an image inside
    pictures.mkdir()
    (pictures / "broken.png").write_bytes(b"not a png")
    config = {"train": dict(TINY["train"], dataset="imagefolder", data_path=str(pictures)), "model": TINY["model"]}
    run_dir = runner.start_run(config, Settings(runs_root=tmp_path / "runs"))
    status = wait_until_inactive(run_dir)
    assert status["state"] == "failed" and "broken.png" in status["error"]
    # status.json says "failed" inside train(); the traceback reaches train.log as the process ends, just after
    wait_for(lambda: "Traceback" in runner.read_log(run_dir), timeout=30, what="the traceback in train.log")
    assert [info.status["state"] for info in runs.list_runs(tmp_path / "runs")] == ["failed"]


def test_bad_config_and_public_limits_are_refused_before_any_process(tmp_path):
    root = tmp_path / "runs"
    with pytest.raises(ConfigError, match="batch_size"):
        runner.start_run({"train": dict(TINY["train"], batch_size=0), "model": {}}, Settings(runs_root=root))
    public = Settings(runs_root=root, public=True, limits=PublicLimits(max_active_runs=1, max_steps=50))
    with pytest.raises(runner.RunnerError, match="at most 50 steps"):
        runner.start_run(TINY, public, owner=runner.new_owner_token(public))
    assert not root.exists() or not [p for p in root.iterdir() if not p.name.startswith(".")]
