"""The judges: one per 28x28 grayscale data set, each data set judged by its own only."""
import json

import pytest
import torch

from genlab import data as D
from genlab.judge import JUDGE_FORMAT, JudgeError, MnistJudge, judge_path, load_judge, main, save_judge
from genlab.metrics.features import try_judge

fashion_installed = pytest.mark.skipif(not D.FASHION_SYSTEM_FOLDER.is_dir(),
                                       reason="apt-get install dataset-fashion-mnist")


def write_judge(path, dataset: str) -> MnistJudge:
    torch.manual_seed(0)
    judge = MnistJudge().eval()
    save_judge(judge, path, {"format": JUDGE_FORMAT, "dataset": dataset, "test_accuracy": 0.5})
    return judge


def test_a_judge_is_loaded_only_for_its_own_data_set(tmp_path):
    path = tmp_path / "fashion-judge.safetensors"
    written = write_judge(path, "fashion")
    judge = load_judge(path, dataset="fashion")
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    assert judge.header["dataset"] == "fashion"
    assert torch.allclose(judge(x), written.half().float()(x), atol=1e-3)    # fp16 weights
    with pytest.raises(JudgeError, match="judges fashion, not mnist"):
        load_judge(path, dataset="mnist")
    found, reason = try_judge(path, (1, 28, 28), "cpu", "mnist")
    assert found is None and "not mnist" in reason
    wide = tmp_path / "wide.safetensors"                          # weights of another width than the card says
    save_judge(MnistJudge(width=64), wide, {"format": JUDGE_FORMAT, "dataset": "fashion", "width": 32})
    with pytest.raises(JudgeError, match="does not hold the judge its card describes"):
        load_judge(wide, dataset="fashion")


def test_every_data_set_gets_its_own_judge_or_a_reason(tmp_path):
    mnist, reason = try_judge(None, (1, 28, 28), "cpu", "mnist")            # the first judge's card has no data set
    assert reason is None and mnist.header["dataset"] == "mnist"
    fashion, reason = try_judge(None, (1, 28, 28), "cpu", "fashion")
    assert reason is None and fashion.header["dataset"] == "fashion"
    assert not torch.equal(mnist.head[1].weight, fashion.head[1].weight)
    for dataset, shape in (("synthetic", (1, 28, 28)), ("imagefolder", (1, 28, 28))):   # emoji64: test_judge_emoji
        judge, reason = try_judge(None, shape, "cpu", dataset)
        assert judge is None and f"no judge for {dataset}" in reason
    judge, reason = try_judge(None, (1, 32, 32), "cpu", "mnist")
    assert judge is None and "28x28" in reason


def test_the_command_names_a_missing_or_foreign_judge_in_one_line(tmp_path, capsys):
    assert main(["--dataset", "fashion", "--out", str(tmp_path / "none.safetensors")]) == 2
    assert "no fashion judge" in capsys.readouterr().err
    write_judge(tmp_path / "j.safetensors", "mnist")
    assert main(["--dataset", "fashion", "--out", str(tmp_path / "j.safetensors")]) == 2
    assert "judges mnist, not fashion" in capsys.readouterr().err
    assert main(["--dataset", "fashion"]) == 0
    assert json.loads(capsys.readouterr().out)["dataset"] == "fashion"


@pytest.mark.slow
@fashion_installed
def test_shipped_fashion_judge_is_accurate_and_real_vs_real_fid_is_small():
    from genlab.config import TrainConfig
    from genlab.data import load_dataset
    from helpers import assert_judge_reads_its_test_set
    judge = load_judge(dataset="fashion")
    assert judge.header["test_accuracy"] >= 0.93
    card = json.loads(judge_path("fashion").with_suffix(".json").read_text())
    assert card["dataset"] == "fashion" and card["test_accuracy"] == judge.header["test_accuracy"]
    config = TrainConfig(dataset="fashion", data_root="/nonexistent-genlab-root")     # the Debian package
    assert_judge_reads_its_test_set(judge, load_dataset(config, "train"), load_dataset(config, "test"), 0.93)


@pytest.mark.slow
@fashion_installed
def test_a_fashion_run_is_quick_evaluated_by_the_fashion_judge(tmp_path):
    from genlab import load, train
    from genlab.eval import TrainingEvaluator
    from helpers import tiny_config
    from picks import GAN_PAIR
    config = tiny_config(GAN_PAIR, dataset="fashion", data_root=str(tmp_path), steps=1, max_images=256)
    train(config, tmp_path / "run")
    evaluator = TrainingEvaluator(config["train"], num_samples=200)
    logged = evaluator(load(tmp_path / "run"))
    assert evaluator.judge.header["dataset"] == "fashion"
    assert {"eval/fid", "eval/coverage"} <= set(logged)
