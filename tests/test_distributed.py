"""Data-parallel training: 2 gloo processes on the CPU started by torchrun stay in sync, write the run
folder once, stop together and resume."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from genlab import runs

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.distributed
@pytest.mark.slow
def test_two_processes_stay_in_sync_and_write_the_run_folder_once(tmp_path):
    out, runs_root = tmp_path / "out", tmp_path / "runs"
    out.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(REPO / "tests" / "distributed_worker.py"), str(out), str(runs_root)],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    for name, state, step in (("full", "finished", 6), ("stopped", "stopped", 3), ("resumed", "finished", 6)):
        returned = [json.loads((out / f"{name}-rank{rank}.json").read_text()) for rank in (0, 1)]
        assert [r["state"] for r in returned] == [state, state], name
        assert [r["step"] for r in returned] == [step, step], name          # the stop reached rank 1
        assert returned[0]["first_batch"] != returned[1]["first_batch"], name   # each rank its own data
        weights = [load_file(str(out / f"{name}-rank{rank}.safetensors")) for rank in (0, 1)]
        assert weights[0].keys() == weights[1].keys()
        for key in weights[0]:
            assert weights[0][key].equal(weights[1][key]), f"{name}: {key} differs between ranks"

    full = runs_root / "full"
    assert [r["step"] for r in runs.read_metrics(full)] == [2, 4, 6]     # one line per log step, not two
    assert runs.read_status(full)["state"] == "finished"
    assert runs.read_status(full)["world_size"] == 2
    assert [step for step, _ in runs.list_samples(full)] == [0, 1, 2, 4, 6]   # step 0, log-spaced, every 4
    assert not list(full.rglob("*.tmp"))
    assert [r["step"] for r in runs.read_metrics(runs_root / "stopped")] == [2, 4, 6]
    assert runs.read_status(runs_root / "stopped")["state"] == "finished"
