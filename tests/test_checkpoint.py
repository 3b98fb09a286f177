"""Checkpoints: loading from a file or a run folder, and refusing bad files clearly."""
import json

import pytest
import torch

import genlab
from genlab import runs
from genlab.checkpoint import CheckpointError, export_checkpoint, read_checkpoint, save_checkpoint
from genlab.models import build_model
from genlab.training import train

from helpers import TINY_MODEL, tiny_config


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("ckpt") / "run"
    train(tiny_config("infogan", steps=2), run)
    return run


def test_load_from_run_folder_and_file(trained_run):
    model = genlab.load(trained_run)
    assert model.name == "infogan" and not model.training
    same = genlab.load(runs.checkpoint_path(trained_run))
    z = model.sample_latents(3, torch.Generator().manual_seed(0))
    assert torch.equal(model.generate(**z), same.generate(**z))


def test_checkpoint_holds_only_plain_tensors_and_a_json_header(trained_run):
    header, tensors = read_checkpoint(trained_run)
    assert header["step"] == 2 and header["model"] == "infogan"
    assert json.dumps(header)                                      # JSON-able
    assert all(isinstance(t, torch.Tensor) for t in tensors.values())
    assert any(k.startswith("optim.generator.") for k in tensors)
    assert {"rng.torch", "rng.loop"} <= set(tensors)


def test_export_is_half_precision_and_loads(trained_run, tmp_path):
    out = export_checkpoint(trained_run, tmp_path / "small.safetensors")
    header, tensors = read_checkpoint(out)
    assert not any(k.startswith(("optim.", "rng.")) for k in tensors)
    assert all(t.dtype == torch.float16 for k, t in tensors.items() if t.is_floating_point())
    model = genlab.load(out)
    assert model.sample(2).dtype == torch.float32
    assert out.stat().st_size < runs.checkpoint_path(trained_run).stat().st_size / 2


def test_truncated_checkpoint_is_refused(trained_run, tmp_path):
    data = runs.checkpoint_path(trained_run).read_bytes()
    bad = tmp_path / "truncated.safetensors"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        genlab.load(bad)


def test_garbage_and_missing_files_are_refused(tmp_path):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        genlab.load(garbage)
    with pytest.raises(CheckpointError, match="does not exist"):
        genlab.load(tmp_path / "nope.safetensors")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        genlab.load(empty)


def test_foreign_safetensors_file_is_refused(tmp_path):
    from safetensors.torch import save_file
    save_file({"weight": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(CheckpointError, match="not written by genlab"):
        genlab.load(tmp_path / "foreign.safetensors")


def test_mismatched_weights_are_refused(tmp_path):
    model = build_model("dcgan", TINY_MODEL["dcgan"])
    bigger = dict(TINY_MODEL["dcgan"], g_channels=16)
    save_checkpoint(tmp_path / "m.safetensors", model, {"model_config": dict(vars(model.config), **bigger)})
    with pytest.raises(CheckpointError, match="do not match"):
        genlab.load(tmp_path / "m.safetensors")


def test_unknown_model_in_header_is_refused(tmp_path):
    model = build_model("vae", TINY_MODEL["vae"])
    save_checkpoint(tmp_path / "m.safetensors", model, {})
    from safetensors import safe_open
    from safetensors.torch import save_file
    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as f:
        header = json.loads(f.metadata()["genlab"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    header["model"] = "stylegan9"
    save_file(tensors, str(tmp_path / "x.safetensors"), metadata={"genlab": json.dumps(header)})
    with pytest.raises(CheckpointError, match="unknown model 'stylegan9'"):
        genlab.load(tmp_path / "x.safetensors")
