"""`genlab export-static`: the folder it writes (page, manifest, ONNX generators, grids, cards, vendored
onnxruntime-web), the float16 storage of exact weights, and its refusals. The generators are checked
against PyTorch with onnxruntime's Python package where it is installed (it is not a requirement); the
page itself is checked in a real browser by tests/test_static_browser.py."""
import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from genlab.checkpoint import save_checkpoint
from genlab.cli import main as cli_main
from genlab.models import GenerativeModel, register_model, unregister_model
from genlab.models.base import ImageConfig
from genlab import static_export as S
from picks import CONDITIONAL, ITERATIVE_SAMPLER, WITH_CODES, WITH_ENCODER
from test_explorer import tiny_model, write_checkpoint
from toy_model import registered

needs_ort = pytest.mark.skipif(not (S.Path(S.__file__).parents[1] / S.ORT_PACKAGE).is_dir(),
                               reason="onnxruntime-web is not installed: run `npm ci`")


def run_onnx(path, latents: dict) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["image"], {f"latent_{k}": v.numpy() for k, v in latents.items()})[0]


# ---------------------------------------------------------------- pure parts
def test_the_export_wrapper_is_generate_in_zero_one():
    model = tiny_model(CONDITIONAL)
    latents = model.sample_latents(3, torch.Generator().manual_seed(1))
    wrapper = S.GeneratorForExport(model, list(latents))
    with torch.no_grad():
        expected = (model.generate(**latents) + 1) / 2
        assert torch.equal(wrapper(*latents.values()), expected.clamp(0, 1))


def test_exact_half_weights_are_stored_as_half_and_read_back_equal():
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    exact = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float16).astype(np.float32)
    inexact = exact + np.float32(1e-5)                                 # not a float16 value any more
    graph = helper.make_graph(
        [helper.make_node("Add", ["exact", "inexact"], ["sum"])], "g", [],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, [64, 32])],
        [numpy_helper.from_array(exact, "exact"), numpy_helper.from_array(inexact, "inexact")])
    S.store_exact_half(graph)
    stored = {i.name: i for i in graph.initializer}
    assert stored["exact__float16"].data_type == TensorProto.FLOAT16
    assert np.array_equal(numpy_helper.to_array(stored["exact__float16"]).astype(np.float32), exact)
    assert stored["inexact"].data_type == TensorProto.FLOAT                       # left as it was
    assert [(n.op_type, list(n.input), list(n.output)) for n in graph.node][0] == \
        ("Cast", ["exact__float16"], ["exact"])
    onnx.checker.check_model(helper.make_model(graph), full_check=True)


def test_exact_int8_weights_are_stored_as_int8_and_read_back_equal():
    """A weight an int8 checkpoint held (q * per-row scale, as `genlab.load` gives it back) is stored as
    int8 + scales behind a DequantizeLinear; the graph computes the same float32 values."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    from onnx.reference import ReferenceEvaluator
    from genlab.checkpoint import dequantize_int8, quantize_int8
    raw = torch.randn(96, 8, 3, 3, generator=torch.Generator().manual_seed(0)) * torch.rand(96, 1, 1, 1)
    exact = dequantize_int8(*quantize_int8(raw)).numpy()                        # (96, 8, 3, 3)
    inexact = exact + np.float32(1e-4)                                          # no longer q * scale
    shape = list(exact.shape)
    graph = helper.make_graph(
        [helper.make_node("Add", ["exact", "inexact"], ["sum"])], "g", [],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(exact, "exact"), numpy_helper.from_array(inexact, "inexact")])
    S.store_exact_int8(graph)
    stored = {i.name: i for i in graph.initializer}
    assert stored["exact__int8"].data_type == TensorProto.INT8 and list(stored["exact__scale"].dims) == [96]
    assert stored["inexact"].data_type == TensorProto.FLOAT                       # left as it was
    assert graph.node[0].op_type == "DequantizeLinear" and list(graph.node[0].output) == ["exact"]
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    onnx.checker.check_model(model, full_check=True)
    assert np.array_equal(ReferenceEvaluator(model).run(None, {})[0], exact + inexact)


def test_model_ids_are_file_safe_and_unique(tmp_path):
    for name in ("a b.safetensors", "a-b.safetensors"):
        write_checkpoint(tmp_path / name, CONDITIONAL)
    (tmp_path / "run 1").mkdir()
    write_checkpoint(tmp_path / "run 1" / "latest.safetensors", CONDITIONAL)    # a folder of one checkpoint
    taken = set()
    assert [S.model_id(tmp_path / n, taken) for n in ("a b.safetensors", "a-b.safetensors", "run 1")] == \
        ["a-b", "a-b-2", "run-1"]


def test_a_missing_onnxruntime_web_names_the_fix(tmp_path):
    with pytest.raises(S.StaticExportError, match="npm ci"):
        S.find_ort(tmp_path)


# ---------------------------------------------------------------- a whole export
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Tiny checkpoints of a conditional model, a model with codes and one with an encoder, exported."""
    if not (S.Path(S.__file__).parents[1] / S.ORT_PACKAGE).is_dir():
        pytest.skip("onnxruntime-web is not installed: run `npm ci`")
    folder = tmp_path_factory.mktemp("static")
    checkpoints = []
    for name in dict.fromkeys((CONDITIONAL, WITH_CODES, WITH_ENCODER)):
        checkpoints.append(folder / f"tiny-{name}.safetensors")
        write_checkpoint(checkpoints[-1], name)
    (folder / f"tiny-{CONDITIONAL}.md").write_text("# A card\n\n<script>alert(1)</script> **bold**\n")
    lines = []
    manifest = S.export_static(checkpoints, folder / "site", space=True, log=lines.append)
    return folder, checkpoints, manifest, lines


@pytest.mark.slow
def test_the_folder_holds_the_page_the_runtime_and_each_model(exported):
    folder, checkpoints, manifest, lines = exported
    site = folder / "site"
    for name in (*S.PAGE_FILES, "ort/ort.js", "ort/ort.wasm", "models.json"):
        assert (site / name).is_file(), name
    assert json.loads((site / "models.json").read_text()) == manifest
    assert [e["id"] for e in manifest["models"]] == [c.stem for c in checkpoints]
    assert len(lines) == len(checkpoints) and all(line.startswith("exported") for line in lines)
    for entry, checkpoint in zip(manifest["models"], checkpoints):
        model = S.load(checkpoint)
        assert entry["spec"] == json.loads(json.dumps(model.latent_spec().to_dict()))
        assert [i["key"] for i in entry["inputs"]] == list(model.sample_latents(1))
        assert all(i["name"] == f"latent_{i['key']}" for i in entry["inputs"])
        for kind in ("onnx", "grid", "card"):
            assert (site / entry[kind]).stat().st_size > 0
        assert entry["z_sliders"] == min(S.MAX_Z_SLIDERS, model.latent_spec().z_dim)
    card = (site / manifest["models"][0]["card"]).read_text()
    assert "<script>" in card                            # the card is copied as text; the page never parses HTML
    assert "innerHTML" not in (site / "explorer.js").read_text()
    # A checkpoint without a card or grid beside it gets a drawn grid (lossless WebP) and a card from its docstring.
    drawn = (site / manifest["models"][1]["grid"]).read_bytes()
    assert drawn[:4] == b"RIFF" and drawn[8:16] == b"WEBPVP8L"                  # VP8L: WebP's lossless bitstream
    readme = (site / "README.md").read_text()
    assert readme.startswith("---\n") and "\nsdk: static\n" in readme.split("---")[1]
    assert "\napp_file: index.html\n" in readme


@pytest.mark.slow
def test_each_onnx_generator_equals_pytorch_for_the_same_latent(exported):
    folder, checkpoints, manifest, _ = exported
    for entry, checkpoint in zip(manifest["models"], checkpoints):
        model = S.load(checkpoint)
        latents = model.sample_latents(1, torch.Generator().manual_seed(5))
        with torch.no_grad():
            expected = ((model.generate(**latents) + 1) / 2).clamp(0, 1).numpy()
        got = run_onnx(folder / "site" / entry["onnx"], latents)
        assert got.shape == expected.shape == (1, *entry["image_shape"])
        assert np.abs(got - expected).max() <= 1e-5, entry["id"]


@pytest.mark.slow
def test_an_image_shaped_latent_gets_no_z_sliders_and_still_exports(tmp_path):
    with registered() as toy:
        model = toy(toy.config_class(**toy.tiny)).eval()
        save_checkpoint(tmp_path / "toy.safetensors", model, {"step": 0})
        manifest = S.export_static([tmp_path / "toy.safetensors"], tmp_path / "site", log=lambda line: None)
        entry = manifest["models"][0]
        assert entry["z_sliders"] == 0 and len(entry["spec"]["z_shape"]) == 3
        model = S.load(tmp_path / "toy.safetensors")
        latents = model.sample_latents(1, torch.Generator().manual_seed(2))
        with torch.no_grad():
            expected = ((model.generate(**latents) + 1) / 2).clamp(0, 1).numpy()
        assert np.abs(run_onnx(tmp_path / "site" / entry["onnx"], latents) - expected).max() <= 1e-5


# ---------------------------------------------------------------- refusals
@dataclass
class _NoLatentConfig(ImageConfig):
    pass


class _NoLatents(GenerativeModel):
    """Samples without an explicit latent input (like an autoregressive model): nothing to put on sliders."""
    config_class = _NoLatentConfig

    def __init__(self, config):
        super().__init__(config)
        self.bias = torch.nn.Parameter(torch.zeros(1))

    def make_optimizers(self):
        return {"all": torch.optim.SGD(self.parameters(), lr=0.1)}

    def training_step(self, batches, optimizers, ctx):
        return {}

    def sample(self, n, rng=None, y=None):
        return self.bias.expand(n, 1, 28, 28)


@needs_ort
def test_a_model_without_latents_is_skipped_with_one_line(tmp_path, capsys):
    register_model("no-latents-test")(_NoLatents)
    try:
        save_checkpoint(tmp_path / "plain.safetensors", _NoLatents(_NoLatentConfig()), {"step": 0})
        code = cli_main(["export-static", str(tmp_path / "plain.safetensors"), str(tmp_path / "site")])
    finally:
        unregister_model("no-latents-test")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[0] == f"skipping {tmp_path / 'plain.safetensors'}: its no-latents-test model has no latent " \
                     f"input to put on sliders"
    assert "nothing to export" in err[1] and len(err) == 2
    assert not (tmp_path / "site").exists()


@needs_ort
def test_an_iterative_sampler_is_skipped_with_one_line_and_the_others_export(tmp_path, capsys):
    """A model that samples in many network passes (HasTrajectory) is left to the live explorer."""
    write_checkpoint(tmp_path / "iterative.safetensors", ITERATIVE_SAMPLER)
    write_checkpoint(tmp_path / "one-pass.safetensors", CONDITIONAL)
    code = cli_main(["export-static", str(tmp_path / "iterative.safetensors"), str(tmp_path / "one-pass.safetensors"),
                     str(tmp_path / "site")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 0
    assert err[0].startswith(f"skipping {tmp_path / 'iterative.safetensors'}: its {ITERATIVE_SAMPLER} model samples "
                             f"in many network passes")
    manifest = json.loads((tmp_path / "site" / "models.json").read_text())
    assert [entry["id"] for entry in manifest["models"]] == ["one-pass"]


@needs_ort
def test_a_foreign_folder_is_refused_and_kept(tmp_path, capsys):
    write_checkpoint(tmp_path / "m.safetensors", CONDITIONAL)
    site = tmp_path / "site"
    site.mkdir()
    (site / "mine.txt").write_text("keep me")
    assert cli_main(["export-static", str(tmp_path / "m.safetensors"), str(site)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not empty and holds no earlier static export" in err[0]
    assert [p.name for p in site.iterdir()] == ["mine.txt"]


@needs_ort
@pytest.mark.slow
def test_an_earlier_export_is_replaced(exported, tmp_path):
    folder, checkpoints, _, _ = exported
    site = tmp_path / "site"
    S.export_static(checkpoints[:2], site, log=lambda line: None)
    manifest = S.export_static(checkpoints[1:2], site, log=lambda line: None)
    assert [e["id"] for e in manifest["models"]] == [checkpoints[1].stem]
    assert sorted(p.stem for p in (site / "models").iterdir()) == [checkpoints[1].stem] * 3


@needs_ort
def test_bad_arguments_are_one_line(tmp_path, capsys):
    assert cli_main(["export-static", str(tmp_path / "out")]) == 2
    assert cli_main(["export-static", str(tmp_path / "missing.safetensors"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "at least one checkpoint" in err[0] and "does not exist" in err[1]
