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
from picks import GAN_PAIR, ONE_NETWORK, WITH_CODES


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("ckpt") / "run"
    train(tiny_config(WITH_CODES, steps=2), run)
    return run


def test_load_from_run_folder_and_file(trained_run):
    model = genlab.load(trained_run)
    assert model.name == WITH_CODES and not model.training
    same = genlab.load(runs.checkpoint_path(trained_run))
    z = model.sample_latents(3, torch.Generator().manual_seed(0))
    assert torch.equal(model.generate(**z), same.generate(**z))


def test_checkpoint_holds_only_plain_tensors_and_a_json_header(trained_run):
    header, tensors = read_checkpoint(trained_run)
    assert header["step"] == 2 and header["model"] == WITH_CODES
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
    model = build_model(GAN_PAIR, TINY_MODEL[GAN_PAIR])
    bigger = dict(TINY_MODEL[GAN_PAIR], g_channels=16)
    save_checkpoint(tmp_path / "m.safetensors", model, {"model_config": dict(vars(model.config), **bigger)})
    with pytest.raises(CheckpointError, match="do not match"):
        genlab.load(tmp_path / "m.safetensors")


def test_unknown_model_in_header_is_refused(tmp_path):
    model = build_model(ONE_NETWORK, TINY_MODEL[ONE_NETWORK])
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


def test_int8_export_halves_big_weights_and_loads_them_back(trained_run, tmp_path):
    """Weights of >= int8_min_numel elements are stored as int8 with a scale per row; load gives float
    weights within half a quantization step of the trained float32 ones, and samples that barely move."""
    full = genlab.load(trained_run)
    out = export_checkpoint(trained_run, tmp_path / "int8.safetensors", int8_min_numel=256)
    header, tensors = read_checkpoint(out)
    big = {k[len("model."):] for k, t in tensors.items() if t.dtype == torch.int8}
    assert big and {k[len("scale."):] for k in tensors if k.startswith("scale.")} == big
    assert all(t.numel() >= 256 and t.dim() >= 2 for k, t in tensors.items() if t.dtype == torch.int8)
    assert all(t.dtype == torch.float16 for k, t in tensors.items()             # the rest stays float16
               if k.startswith("model.") and k[len("model."):] not in big and t.is_floating_point())
    model = genlab.load(out)
    reference, loaded = full.state_dict(), model.state_dict()
    for key in big:
        step = tensors[f"scale.{key}"].float().reshape(-1, *[1] * (reference[key].dim() - 1))
        assert loaded[key].dtype == torch.float32
        assert ((loaded[key] - reference[key]).abs() <= step * 0.501).all()
    z = model.sample_latents(4, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (model.generate(**z) - full.generate(**z)).abs().max() < 0.1


@pytest.mark.parametrize("name, mutate, message", [
    ("no scale", lambda t, key: {k: v for k, v in t.items() if k != f"scale.{key}"}, "no valid scale"),
    ("scale of the wrong shape", lambda t, key: dict(t, **{f"scale.{key}": t[f"scale.{key}"][:1]}), "no valid scale"),
    ("infinite scale", lambda t, key: dict(t, **{f"scale.{key}": t[f"scale.{key}"] * float("inf")}),
     "no valid scale"),
    ("a scale for no int8 weight", lambda t, key: dict(t, **{"scale.nothing": torch.ones(3)}), "for no int8 weight"),
])
def test_bad_int8_scales_are_checkpoint_errors(tmp_path, name, mutate, message):
    from genlab.checkpoint import tensor_checksum
    path = tmp_path / "q.safetensors"
    save_checkpoint(path, build_model(GAN_PAIR, TINY_MODEL[GAN_PAIR]), {"step": 3}, int8_min_numel=256)
    _, tensors = read_checkpoint(path)
    key = next(k[len("scale."):] for k in tensors if k.startswith("scale."))
    tensors = mutate(tensors, key)
    bad = rewrite(path, tmp_path / "bad.safetensors", tensors=tensors,
                  header=lambda h: dict(h, checksum=tensor_checksum(tensors)))
    with pytest.raises(CheckpointError, match=message):
        genlab.load(bad)


# ---------------------------------------------------------------- hostile files
def rewrite(source, destination, header=None, tensors=None, metadata=None):
    """A copy of a checkpoint with its genlab header (or whole metadata) and tensors replaced."""
    from safetensors import safe_open
    from safetensors.torch import save_file
    with safe_open(str(source), framework="pt") as f:
        original = json.loads(f.metadata()["genlab"])
        original_tensors = {k: f.get_tensor(k) for k in f.keys()}
    header = original if header is None else header(original)
    save_file(original_tensors if tensors is None else tensors, str(destination),
              metadata=metadata or {"genlab": json.dumps(header)})
    return destination


@pytest.fixture
def small_checkpoint(tmp_path):
    path = tmp_path / "small.safetensors"
    save_checkpoint(path, build_model(GAN_PAIR, TINY_MODEL[GAN_PAIR]), {"step": 3})
    return path


def test_save_writes_a_checksum_that_load_verifies(small_checkpoint, tmp_path):
    header, tensors = read_checkpoint(small_checkpoint)
    assert len(header["checksum"]) == 64
    from genlab.checkpoint import tensor_checksum
    assert tensor_checksum(tensors) == header["checksum"]
    data = bytearray(small_checkpoint.read_bytes())
    data[-5] ^= 0x10                                                   # one bit of the last weight
    flipped = tmp_path / "flipped.safetensors"
    flipped.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        genlab.load(flipped)


def test_files_without_a_checksum_still_load(small_checkpoint, tmp_path):
    old = rewrite(small_checkpoint, tmp_path / "old.safetensors",
                  header=lambda h: {k: v for k, v in h.items() if k != "checksum"})
    assert genlab.load(old).name == GAN_PAIR


def test_shipped_checkpoints_load():
    from pathlib import Path
    from genlab.models import MODELS
    shipped = Path(__file__).resolve().parents[1] / "checkpoints"
    loaded = 0
    for path in sorted(shipped.glob("*.safetensors")):
        if "judge" not in path.name:
            assert genlab.load(path).name in MODELS
            loaded += 1
    assert loaded >= 5


@pytest.mark.parametrize("name, mutate, message", [
    ("list", lambda h: [1, 2, 3], "not a JSON object"),
    ("nan", lambda h: dict(h, model_config=dict(h["model_config"], lr=float("nan"))), "not finite"),
    ("negative step", lambda h: dict(h, step=-1), "step must be an integer >= 0"),
    ("string step", lambda h: dict(h, step="7"), "step must be an integer"),
    ("no model", lambda h: {k: v for k, v in h.items() if k != "model"}, "no 'model'"),
    ("model_config a list", lambda h: dict(h, model_config=[1]), "must be a dict"),
    ("model a number", lambda h: dict(h, model=3), "must be a str"),
    ("bad config value", lambda h: dict(h, model_config=dict(h["model_config"], z_dim=-4)), "cannot rebuild"),
    ("dropped not names", lambda h: dict(h, dropped=[1]), "dropped"),
])
def test_malformed_headers_are_checkpoint_errors(small_checkpoint, tmp_path, name, mutate, message):
    bad = rewrite(small_checkpoint, tmp_path / "bad.safetensors", header=mutate)
    with pytest.raises(CheckpointError, match=message):
        genlab.load(bad)


def test_non_json_metadata_and_out_of_file_tensors_are_checkpoint_errors(small_checkpoint, tmp_path):
    bad = rewrite(small_checkpoint, tmp_path / "bad.safetensors", metadata={"genlab": "{not json"})
    with pytest.raises(CheckpointError, match="not valid JSON"):
        genlab.load(bad)
    import struct
    data = small_checkpoint.read_bytes()
    length = struct.unpack("<Q", data[:8])[0]
    table = json.loads(data[8:8 + length])
    key = next(k for k in table if k != "__metadata__")
    table[key]["data_offsets"] = [0, 10 ** 12]
    text = json.dumps(table).encode()
    (tmp_path / "lying.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + data[8 + length:])
    with pytest.raises(CheckpointError, match="out of the file"):
        genlab.load(tmp_path / "lying.safetensors")


def test_a_tiny_file_asking_for_a_huge_model_is_refused_from_its_header(small_checkpoint, tmp_path):
    """1.4 billion parameters declared in a file of a few KB: refused by read_header, which reads
    no tensor data and builds the model on the meta device only."""
    from genlab.checkpoint import read_header
    huge = dict(g_channels=512, d_channels=512, fc_width=8192, q_width=4096, image_size=64, channels=3)
    bad = rewrite(small_checkpoint, tmp_path / "huge.safetensors",
                  header=lambda h: dict(h, model=WITH_CODES, model_config=huge))
    assert bad.stat().st_size < 100_000
    with pytest.raises(CheckpointError, match=r"has 1,4\d\d,\d{3},\d{3} parameters; at most 200,000,000"):
        read_header(bad)
    with pytest.raises(CheckpointError, match="parameters; at most 1,000 are allowed"):
        genlab.load(small_checkpoint, max_parameters=1000)


def test_declared_shapes_must_match_the_model(small_checkpoint, tmp_path):
    from genlab.checkpoint import read_header
    bad = rewrite(small_checkpoint, tmp_path / "wide.safetensors",
                  header=lambda h: dict(h, model_config=dict(h["model_config"], g_channels=16)))
    with pytest.raises(CheckpointError, match="do not match"):
        read_header(bad)


def test_serving_fast_on_the_cpu_keeps_the_likelihood():
    """serve_fast_on_cpu (used by the explorer and `genlab eval`) holds conv weights NHWC; the
    importance-weighted bound it scores stays the model's (float rounding only)."""
    from genlab.checkpoint import serve_fast_on_cpu
    from picks import BINARY_LIKELIHOOD
    torch.manual_seed(0)
    model = build_model(BINARY_LIKELIHOOD, TINY_MODEL[BINARY_LIKELIHOOD]).eval()
    x01 = torch.bernoulli(torch.full((3, 1, 28, 28), 0.3), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = model.nll(x01, torch.Generator().manual_seed(2), k=20)
        assert serve_fast_on_cpu(model) is model
        fast = model.nll(x01, torch.Generator().manual_seed(2), k=20)
    convs = [p for p in model.parameters() if p.dim() == 4 and p.shape[-1] > 1]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert torch.allclose(plain, fast, rtol=1e-5)
