"""Hugging Face Hub: the folder `push` uploads, saved and loaded back through huggingface_hub's own
code (PyTorchModelHubMixin.save_pretrained / from_pretrained on a local folder, the path a
downloaded repo takes too) for every registered model; weights are read from model.safetensors
only (torch.load is never called), strictly; clear errors offline."""
import json

import pytest
import torch
from huggingface_hub import ModelCard

import genlab
from genlab.checkpoint import DroppedPart, save_checkpoint
from genlab.hub import HubError, load_from_hub, push, save_for_hub
from genlab.models import MODELS, HasLikelihood, build_model, has_classes


def tiny_checkpoint(path, name, seed=0):
    """A checkpoint of the registered model `name` in its tiny test config, at step 7."""
    torch.manual_seed(seed)
    model = build_model(name, dict(MODELS[name].tiny, channels=1, image_size=28, num_classes=10)).eval()
    save_checkpoint(path, model, {"step": 7, "train_config": {"dataset": "synthetic"}})
    return path


@pytest.fixture
def no_torch_load(monkeypatch):
    """Any call of torch.load (the pickle path) fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("torch.load was called")
    monkeypatch.setattr(torch, "load", refuse)


@pytest.fixture
def checkpoint(tmp_path):
    return tiny_checkpoint(tmp_path / "tiny.safetensors", sorted(MODELS)[0])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_save_and_load_round_trip_through_huggingface_hub(name, tmp_path, no_torch_load):
    checkpoint = tiny_checkpoint(tmp_path / f"tiny-{name}.safetensors", name)
    folder = save_for_hub(checkpoint, tmp_path / "repo", repo_id="me/genlab-tiny")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors",
                                                      "sample_grid.png"]
    config = json.loads((folder / "config.json").read_text())
    assert config["name"] == name and config["step"] == 7
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "genlab" and {"genlab", name} <= set(card.data.tags)
    assert "](sample_grid.png)" in card.text and 'load_from_hub("me/genlab-tiny")' in card.text
    assert "import torch\nfrom genlab.hub import load_from_hub" in card.text     # the usage code imports what it uses
    original = genlab.load(checkpoint)
    assert ("model.nll(" in card.text) == isinstance(original, HasLikelihood)
    assert ("sample by class" in card.text) == has_classes(original)

    loaded = load_from_hub(folder)
    assert loaded.checkpoint_header["step"] == 7 and not loaded.training and loaded.name == name
    rng = lambda: torch.Generator().manual_seed(0)                                  # noqa: E731
    with torch.no_grad():
        from_hub = loaded.sample(6, rng())
        assert torch.allclose(from_hub, original.sample(6, rng()), atol=2e-2)        # fp16 weights
        # the weights file is also a genlab checkpoint
        assert torch.equal(genlab.load(folder / "model.safetensors").sample(6, rng()), from_hub)


@pytest.mark.parametrize("name", sorted(name for name, cls in MODELS.items() if cls.training_only))
def test_inference_export_without_training_only_parts_round_trips(name, tmp_path, no_torch_load):
    checkpoint = tiny_checkpoint(tmp_path / "full.safetensors", name)
    parts = MODELS[name].training_only
    small = genlab.export_checkpoint(checkpoint, tmp_path / "inference.safetensors", drop=parts)
    loaded = load_from_hub(save_for_hub(small, tmp_path / "repo"))
    assert loaded.checkpoint_header["dropped"] == list(parts)
    assert loaded.sample(2, torch.Generator().manual_seed(0)).shape == (2, 1, 28, 28)
    for part in parts:
        assert isinstance(getattr(loaded, part), DroppedPart)
        with pytest.raises(genlab.CheckpointError, match=f"without its {part}"):
            getattr(loaded, part)(torch.zeros(1, 1, 28, 28))


def test_weights_with_a_missing_tensor_are_refused(checkpoint, tmp_path, no_torch_load):
    from safetensors import safe_open
    from safetensors.torch import save_file
    folder = save_for_hub(checkpoint, tmp_path / "repo")
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        metadata = f.metadata()
        keys = list(f.keys())
        tensors = {key: f.get_tensor(key) for key in keys[1:]}
    save_file(tensors, str(folder / "model.safetensors"), metadata=metadata)
    with pytest.raises(HubError, match="(?s)do not match.*missing, unexpected or of another shape"):     # strict loading, not the mixin default
        load_from_hub(folder)


def test_a_repo_with_pickled_weights_only_is_refused_without_torch_load(checkpoint, tmp_path, no_torch_load):
    folder = save_for_hub(checkpoint, tmp_path / "repo")
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")     # what the mixin would torch.load
    with pytest.raises(HubError, match="no model.safetensors.*safetensors weights only"):
        load_from_hub(folder)


def cached_repo(monkeypatch, cache, repo_id, folder):
    """Put a saved Hub folder into a fresh huggingface_hub cache, as a download of `repo_id` leaves it."""
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for path in folder.iterdir():
        (snapshot / path.name).write_bytes(path.read_bytes())


def test_a_cached_hub_repo_loads_from_safetensors_and_never_falls_back_to_pickle(checkpoint, tmp_path,
                                                                                  monkeypatch, no_torch_load):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    folder = save_for_hub(checkpoint, tmp_path / "repo")
    cached_repo(monkeypatch, tmp_path / "cache", "me/genlab-tiny", folder)
    model = load_from_hub("me/genlab-tiny")                                 # from the cache, no network
    assert model.checkpoint_header["step"] == 7
    # a repo whose weights are pickled only: the mixin's own code would torch.load pytorch_model.bin
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    cached_repo(monkeypatch, tmp_path / "cache2", "me/genlab-pickled", folder)
    with pytest.raises(HubError):
        load_from_hub("me/genlab-pickled")


def test_a_config_naming_no_registered_model_is_refused(checkpoint, tmp_path):
    folder = save_for_hub(checkpoint, tmp_path / "repo")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(config, name="no-such-model")))
    with pytest.raises(HubError, match="unknown model 'no-such-model'"):
        load_from_hub(folder)


def test_offline_push_and_pull_say_so(checkpoint, monkeypatch):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubError, match="offline"):
        push(checkpoint, "me/genlab-tiny")
    with pytest.raises(HubError, match="offline|no model repo"):
        load_from_hub("genlab-tests/not-downloaded-before")
    assert genlab.load(checkpoint).sample(2).shape == (2, 1, 28, 28)       # local checkpoints still work
