"""The training loop: the run folder it writes, resume equivalence, stop requests, divergence, the one
resume path (prepare_run), the evaluator handed in, and a model that has no latents at all."""
import json
import os
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import genlab
from genlab import runs
from genlab.checkpoint import read_checkpoint
from genlab.config import ConfigError, param
from genlab.models import MODELS, GenerativeModel, register_model, unregister_model
from genlab.models.base import ImageConfig
from genlab.training import RESUMABLE_CHANGES, make_config, prepare_run, train
from genlab.training.tasks import save_grid

from helpers import TINY_MODEL, tiny_config
from picks import GAN_PAIR, ONE_NETWORK


def model_tensors(run_dir):
    _, tensors = read_checkpoint(runs.checkpoint_path(run_dir))
    return {k: v for k, v in tensors.items() if not k.startswith("rng.")}


def test_run_folder_is_complete(tmp_path):
    events = []
    status = train(tiny_config(GAN_PAIR, steps=4), tmp_path / "run", on_event=lambda k, p: events.append(k))
    run = tmp_path / "run"
    assert status["state"] == "finished" and status["step"] == 4
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["model"] == GAN_PAIR and config["model"]["image_size"] == 28
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [2, 4]
    assert {"loss/d", "loss/g", "d/real", "d/fake", "r1/grad_norm", "images_per_s", "epoch", "time"} <= set(lines[0])
    assert [s for s, _ in runs.list_samples(run)] == [0, 1, 2, 4]          # step 0, log-spaced, every 2
    assert runs.checkpoint_path(run).exists()
    saved = json.loads((run / "status.json").read_text())
    assert saved["state"] == "finished" and saved["pid"] == os.getpid() and saved["heartbeat"] > 0
    assert events[0] == "start" and events[-1] == "end" and {"log", "sample", "checkpoint"} <= set(events)


def any_tiny_config(model: str, **train_fields) -> dict:
    """A tiny run config on the synthetic set for any registered model (its `tiny` config)."""
    fields = dict(model=model, dataset="synthetic", image_size=28, steps=4, batch_size=8, log_every=2,
                  sample_every=2, checkpoint_every=2, device="cpu")
    return make_config(dict(fields, **train_fields), MODELS[model].tiny or TINY_MODEL.get(model, {}))


@pytest.mark.parametrize("model", sorted(MODELS))
def test_resume_equivalence(tmp_path, model):
    """N steps, stop, N resumed steps == 2N steps straight (same seed, CPU)."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(any_tiny_config(model, steps=6, log_every=3, checkpoint_every=3), straight)
    train(any_tiny_config(model, steps=3, log_every=3, checkpoint_every=3), split)
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

    status = train(tiny_config(ONE_NETWORK, steps=50, checkpoint_every=100), tmp_path / "run", should_stop=should_stop)
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

    status = train(tiny_config(GAN_PAIR, steps=100), run, on_event=on_event)
    assert status["state"] == "stopped" and status["step"] == 2
    assert not runs.stop_requested(run)


def test_nan_loss_fails_the_run_with_a_message(tmp_path, monkeypatch):
    """A learning rate far too high drives the weights to inf; the run ends as failed, saying why."""
    config = tiny_config(ONE_NETWORK, steps=200, log_every=10)
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
    train(tiny_config(ONE_NETWORK, steps=2), run)
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

    train(tiny_config(ONE_NETWORK, steps=4, checkpoint_every=2, log_every=1, sample_every=1), run, on_event=keep_step_2)
    os.replace(saved, runs.checkpoint_path(run))
    assert genlab.resume(run, steps=6)["state"] == "finished"
    assert [r["step"] for r in runs.read_metrics(run)] == [1, 2, 3, 4, 5, 6]
    assert [s for s, _ in runs.list_samples(run)] == [0, 1, 2, 3, 4, 5, 6]


def test_a_running_run_is_not_resumed_twice(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(ONE_NETWORK, steps=1), run)
    writer = runs.RunLock.acquire(run)                              # another writer holds the run
    try:
        with pytest.raises(genlab.ConfigError, match="still running"):
            genlab.resume(run, steps=2)
    finally:
        writer.release()


def test_existing_run_folder_is_not_overwritten(tmp_path):
    train(tiny_config(ONE_NETWORK, steps=1), tmp_path / "run")
    with pytest.raises(genlab.ConfigError, match="already holds a run"):
        train(tiny_config(ONE_NETWORK, steps=1), tmp_path / "run")


def test_resume_refuses_model_changes(tmp_path):
    train(tiny_config(ONE_NETWORK, steps=1), tmp_path / "run")
    changed = tiny_config(ONE_NETWORK, steps=2)
    changed["model"]["z_dim"] = 7
    with pytest.raises(genlab.ConfigError, match="can change only"):
        train(changed, tmp_path / "run", resume=True)


@pytest.mark.data
def test_mnist_trains_from_the_shared_folder(tmp_path, mnist_data_root):
    status = train(tiny_config(GAN_PAIR, dataset="mnist", data_root=str(mnist_data_root), steps=2), tmp_path / "run")
    assert status["state"] == "finished"
    header, _ = read_checkpoint(runs.checkpoint_path(tmp_path / "run"))
    assert header["num_images"] == 60000 and header["dataset"] == "mnist"


def test_a_stop_requested_while_starting_is_honoured(tmp_path):
    """A STOP written before the loop runs (the dashboard's Stop during start-up) is not lost."""
    run = tmp_path / "run"
    run.mkdir()
    runs.request_stop(run)
    status = train(tiny_config(ONE_NETWORK, steps=50), run)
    assert status["state"] == "stopped" and status["step"] == 0
    assert runs.checkpoint_path(run).exists() and not runs.stop_requested(run)


# ---------------------------------------------------------------- one resume path
def test_prepare_run_decides_fresh_or_resume_and_what_may_change(tmp_path):
    run = tmp_path / "run"
    config = tiny_config(ONE_NETWORK, steps=2)
    assert prepare_run(run, config, resume=False).resume is False
    with pytest.raises(ConfigError, match="not a run folder"):
        prepare_run(run, None, resume=True)
    train(config, run)
    with pytest.raises(ConfigError, match="already holds a run"):
        prepare_run(run, config, resume=False)
    assert prepare_run(run, None, resume=True).config == json.loads((run / "config.json").read_text())
    changes = {"steps": 9, "log_every": 3, "device": "cpu", "eval_every": 0}
    assert set(changes) <= RESUMABLE_CHANGES
    prepared = prepare_run(run, {"train": changes}, resume=True)
    assert prepared.resume and {k: prepared.config["train"][k] for k in changes} == changes
    assert prepare_run(run, config, resume=True).config["model"] == prepared.config["model"]  # unchanged values
    for overrides, named in [({"train": {"seed": 3}}, "seed"), ({"train": {"dataset": "mnist"}}, "dataset"),
                             ({"model": {"z_dim": 7}}, "model.z_dim")]:
        with pytest.raises(ConfigError, match=f"can change only .*asked to change {named}"):
            prepare_run(run, overrides, resume=True)


def test_image_fields_set_from_the_data_are_no_change_on_resume(tmp_path):
    """An RGB 32x32 run stores channels=3, image_size=32; its own request (defaults 1 and 28) resumes."""
    config = tiny_config(ONE_NETWORK, steps=1, channels=3, image_size=32)
    train(config, tmp_path / "rgb")
    assert json.loads((tmp_path / "rgb" / "config.json").read_text())["model"]["image_size"] == 32
    assert train(dict(config, train=dict(config["train"], steps=2)), tmp_path / "rgb", resume=True)["step"] == 2


def test_a_stale_stop_request_is_cleared_on_resume(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(ONE_NETWORK, steps=1), run)
    runs.request_stop(run)                                     # made after the run had ended
    assert genlab.resume(run, steps=3)["state"] == "finished"


# ---------------------------------------------------------------- the evaluator is handed in
def test_the_evaluator_runs_at_eval_steps_and_its_values_are_logged(tmp_path):
    run, seen = tmp_path / "run", []

    def evaluator(model):
        seen.append(model.training)
        return {"eval/calls": float(len(seen))}

    train(tiny_config(ONE_NETWORK, steps=6, log_every=3, eval_every=2), run, evaluator=evaluator)
    lines = runs.read_metrics(run)
    assert [r["step"] for r in lines] == [2, 3, 4, 6]
    assert [r.get("eval/calls") for r in lines] == [1.0, None, 2.0, 3.0]
    assert "loss/total" in lines[-1] and "loss/total" not in lines[0]          # step 6: one line, both


def test_eval_every_without_an_evaluator_is_refused_before_any_folder(tmp_path):
    with pytest.raises(ConfigError, match="eval_every=2 needs an evaluator"):
        train(tiny_config(ONE_NETWORK, steps=4, eval_every=2), tmp_path / "run")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- any model: the loop names no network
@dataclass
class ToyConfig(ImageConfig):
    """A test-only model's config."""
    lr: float = param(1e-2, "Adam learning rate.", low=0.0)


class Toy(GenerativeModel):
    """Images from one noise number through a linear layer: no latents, no generate, no grid_latents."""
    config_class = ToyConfig

    def __init__(self, config):
        super().__init__(config)
        c = config
        self.shape = (c.channels, c.image_size, c.image_size)
        self.net = nn.Linear(1, c.channels * c.image_size * c.image_size)

    def make_optimizers(self):
        return {"net": torch.optim.Adam(self.net.parameters(), lr=self.config.lr)}

    def draw(self, n, rng):
        noise = torch.randn(n, 1, generator=rng, device=self.device)           # (n, 1)
        return torch.tanh(self.net(noise)).view(n, *self.shape)                 # (n, C, H, W)

    def training_step(self, batches, optimizers, ctx):
        x, _ = batches()
        loss = (self.draw(x.shape[0], ctx.rng) - x).pow(2).mean()
        optimizers["net"].zero_grad()
        loss.backward()
        optimizers["net"].step()
        return {"loss/mse": loss.detach()}

    def sample(self, n, rng=None, y=None):
        return self.draw(n, rng)


@pytest.fixture
def toy_model():
    register_model("toy-loop")(Toy)
    yield "toy-loop"
    unregister_model("toy-loop")


def test_a_model_without_latents_trains_samples_and_resumes_exactly(tmp_path, toy_model):
    def config(steps):
        return make_config(dict(model=toy_model, dataset="synthetic", steps=steps, batch_size=8, log_every=2,
                                sample_every=2, checkpoint_every=2, device="cpu"), {})
    train(config(4), tmp_path / "straight")
    train(config(2), tmp_path / "split")
    assert genlab.resume(tmp_path / "split", steps=4)["state"] == "finished"
    a, b = model_tensors(tmp_path / "straight"), model_tensors(tmp_path / "split")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [s for s, _ in runs.list_samples(tmp_path / "split")] == [0, 1, 2, 4]
    assert [r["loss/mse"] for r in runs.read_metrics(tmp_path / "split")] == \
           [r["loss/mse"] for r in runs.read_metrics(tmp_path / "straight")]


def test_the_sample_grid_is_the_same_every_time_and_leaves_training_mode(tmp_path):
    model = genlab.build_model(ONE_NETWORK, TINY_MODEL[ONE_NETWORK]).train()
    for n in (1, 2):
        save_grid(model, torch.Generator().manual_seed(5), tmp_path / f"grid{n}.png")
    assert model.training
    assert (tmp_path / "grid1.png").read_bytes() == (tmp_path / "grid2.png").read_bytes()


def test_a_resumed_run_keeps_its_step_while_it_starts(tmp_path, monkeypatch):
    """Every status a resumed run writes keeps its step (a watcher saw it drop to 0 while loading)."""
    run = tmp_path / "run"
    train(tiny_config(ONE_NETWORK, steps=4), run)
    written, write_status = [], runs.write_status

    def recording(run_dir, state, **fields):                 # the real write, remembered
        status = write_status(run_dir, state, **fields)
        written.append((state, status["step"]))
        return status
    monkeypatch.setattr(runs, "write_status", recording)
    genlab.resume(run, steps=6)
    assert written[0] == ("starting", 4) and min(step for _, step in written) == 4


def test_a_resume_keeps_the_run_s_creation_time(tmp_path):
    import os
    import genlab
    from genlab import runs
    from helpers import tiny_config
    from picks import GAN_PAIR
    run = tmp_path / "run"
    genlab.train(tiny_config(GAN_PAIR, steps=2), run)
    for path in (run / "config.json", *(run / "samples").iterdir()):
        os.utime(path, (1_000_000, 1_000_000))                     # as if made long ago
    genlab.resume(run, steps=4)
    assert runs.run_info(run).created == 1_000_000


SIGTERM_AFTER_THE_LOOP = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import genlab
from helpers import tiny_config
from picks import GAN_PAIR
asked = []
def should_stop():                       # the STOP file's path: the loop ends at step 2 ...
    asked.append(1)
    return len(asked) > 2
def on_event(kind, payload):             # ... and the Stop's SIGTERM arrives during the final checkpoint
    if kind == "checkpoint" and payload["step"] == 2:
        os.kill(os.getpid(), signal.SIGTERM)
status = genlab.train(tiny_config(GAN_PAIR, steps=8, checkpoint_every=100), {run!r}, should_stop=should_stop,
                      on_event=on_event)
print(status["state"], status["step"])
"""


def test_a_sigterm_after_the_loop_ended_still_lets_the_run_save_and_say_stopped(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    from genlab import runs
    script = SIGTERM_AFTER_THE_LOOP.format(tests=str(Path(__file__).parent), run=str(tmp_path / "run"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["stopped", "2"]
    assert runs.read_status(tmp_path / "run")["state"] == "stopped"


def test_a_resumed_channels_last_run_keeps_the_optimizer_state_in_the_parameters_layout(tmp_path):
    """A checkpoint stores Adam's moments contiguous; restored into channels_last parameters they must take
    the parameters' strides (CUDA's fused/foreach Adam refused the mix: resume failed on a GPU)."""
    from genlab.training.state import TrainState
    config = any_tiny_config(GAN_PAIR, steps=2, checkpoint_every=2, channels_last="on")
    train(config, tmp_path / "run")
    stored = json.loads((tmp_path / "run" / "config.json").read_text())["model"]
    model = genlab.build_model(GAN_PAIR, stored).to(memory_format=torch.channels_last)
    state = TrainState(torch.Generator(), model.make_optimizers())
    state.restore(runs.checkpoint_path(tmp_path / "run"), model)
    checked = 0
    for optimizer in state.optimizers.values():
        for param, fields in optimizer.state.items():
            for value in fields.values():
                if torch.is_tensor(value) and value.shape == param.shape:
                    assert value.stride() == param.stride()
                    checked += param.dim() == 4 and not param.is_contiguous()
    assert checked > 0                                   # some moments really were channels_last
