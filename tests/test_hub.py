"""Hugging Face Hub: the folder `push` uploads, saved and loaded back through huggingface_hub's own
code (PyTorchModelHubMixin.save_pretrained / from_pretrained on a local folder, the path a
downloaded repo takes too), and clear errors offline."""
import json

import pytest
import torch
from huggingface_hub import ModelCard

import genlab
from genlab.hub import HubError, load_from_hub, push, save_for_hub

from test_explorer import write_checkpoint


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "tiny-infogan.safetensors"
    write_checkpoint(path, "infogan")
    return path


def test_save_and_load_round_trip_through_huggingface_hub(checkpoint, tmp_path):
    folder = save_for_hub(checkpoint, tmp_path / "repo", repo_id="me/genlab-tiny")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors",
                                                      "sample_grid.png"]
    config = json.loads((folder / "config.json").read_text())
    assert config["name"] == "infogan" and config["step"] == 7
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "genlab" and {"genlab", "infogan"} <= set(card.data.tags)
    assert "](sample_grid.png)" in card.text and 'load_from_hub("me/genlab-tiny")' in card.text

    loaded = load_from_hub(folder)
    original = genlab.load(checkpoint)
    latents = original.sample_latents(6, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(loaded.generate(**latents), original.generate(**latents), atol=2e-3)  # fp16
        # the weights file is also a genlab checkpoint
        assert torch.equal(genlab.load(folder / "model.safetensors").generate(**latents),
                           loaded.generate(**latents))
    assert loaded.checkpoint_header["step"] == 7 and not loaded.training


def test_inference_export_without_discriminator_round_trips(checkpoint, tmp_path):
    small = genlab.export_checkpoint(checkpoint, tmp_path / "g-only.safetensors", drop=("discriminator",))
    loaded = load_from_hub(save_for_hub(small, tmp_path / "repo"))
    assert loaded.checkpoint_header["dropped"] == ["discriminator"]
    with pytest.raises(genlab.CheckpointError, match="without its discriminator"):
        loaded.infer_codes(torch.zeros(1, 1, 28, 28))


def test_weights_with_a_missing_tensor_are_refused(checkpoint, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file
    folder = save_for_hub(checkpoint, tmp_path / "repo")
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        metadata = f.metadata()
        tensors = {key: f.get_tensor(key) for key in f.keys() if not key.endswith("convs.0.bias")}
    save_file(tensors, str(folder / "model.safetensors"), metadata=metadata)
    with pytest.raises(HubError, match="(?s)do not match.*Missing key"):     # strict loading, not the mixin default
        load_from_hub(folder)


def test_offline_push_and_pull_say_so(checkpoint, monkeypatch):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubError, match="offline"):
        push(checkpoint, "me/genlab-tiny")
    with pytest.raises(HubError, match="offline|no model repo"):
        load_from_hub("genlab-tests/not-downloaded-before")
    assert genlab.load(checkpoint).sample(2).shape == (2, 1, 28, 28)       # local checkpoints still work
