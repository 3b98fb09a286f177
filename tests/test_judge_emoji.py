"""The emoji64 judge: a 64x64 RGB CNN of the nine Unicode emoji groups, beside the 28x28 grayscale judges;
each reads only its own data set's images, and emoji64 runs get judged metrics from the real images that exist."""
import json
import math

import pytest
import torch

from genlab import data as D
from genlab.judge import (JUDGE_FORMAT, JUDGE_INPUT_SHAPES, JUDGED_DATASETS, Judge, JudgeError, MnistJudge,
                          judge_outputs, judge_path, load_judge, save_judge)
from genlab.metrics import EvalContext, applicable, evaluate
from genlab.metrics.features import try_judge

emoji_installed = pytest.mark.skipif(not (D.EMOJI_FONT.is_file() and D.EMOJI_TEST.is_file()),
                                     reason="apt-get install fonts-noto-color-emoji unicode-data")
GROUPS = ["Smileys & Emotion", "People & Body", "Animals & Nature", "Food & Drink", "Travel & Places",
          "Activities", "Objects", "Symbols", "Flags"]
EMOJI_SHAPE = (3, 64, 64)


@pytest.fixture(scope="module")
def emoji_root(tmp_path_factory):
    """A data root the emoji are rendered into once for this module (a few seconds)."""
    if not (D.EMOJI_FONT.is_file() and D.EMOJI_TEST.is_file()):
        pytest.skip("apt-get install fonts-noto-color-emoji unicode-data")
    return tmp_path_factory.mktemp("emoji-data")


def emoji_splits(root):
    from genlab.config import TrainConfig
    config = TrainConfig(dataset="emoji64", data_root=str(root))
    return D.load_dataset(config, "train"), D.load_dataset(config, "test")


def write_emoji_judge(path) -> Judge:
    torch.manual_seed(0)
    judge = Judge(32, EMOJI_SHAPE, len(GROUPS)).eval()
    save_judge(judge, path, {"format": JUDGE_FORMAT, "dataset": "emoji64", "width": 32, "test_accuracy": 0.5,
                             "input_shape": list(EMOJI_SHAPE), "classes": GROUPS})
    return judge


def test_the_judge_is_built_for_its_input_shape_and_classes(tmp_path):
    emoji = Judge(32, EMOJI_SHAPE, 9)
    assert emoji.architecture() == "4x(conv3x3 32/64/128/128, BN, ReLU, maxpool) -> fc128 (features) -> fc9"
    assert Judge(64).architecture() == "3x(conv3x3 64/128/256, BN, ReLU, maxpool) -> fc128 (features) -> fc10"
    assert MnistJudge is Judge
    written = write_emoji_judge(tmp_path / "emoji64-judge.safetensors")
    judge = load_judge(tmp_path / "emoji64-judge.safetensors", dataset="emoji64")
    assert judge.input_shape == EMOJI_SHAPE and judge.num_classes == 9 and judge.header["classes"] == GROUPS
    x = torch.randint(0, 256, (5, *EMOJI_SHAPE), dtype=torch.uint8)
    features, logits = judge_outputs(judge, x)
    assert features.shape == (5, 128) and logits.shape == (5, 9)
    assert torch.allclose(logits, written.half().float()(x.float() / 127.5 - 1), atol=1e-3)   # fp16 weights
    assert (tmp_path / "emoji64-judge.safetensors").stat().st_size < 1_200_000


def test_grayscale_and_colour_are_never_judged_by_each_others_judge(tmp_path):
    path = tmp_path / "emoji64-judge.safetensors"
    emoji = write_emoji_judge(path)
    with pytest.raises(ValueError, match="reads 64x64 RGB images .* got 28x28 grayscale") as error:
        judge_outputs(emoji, torch.zeros(2, 1, 28, 28))
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="reads 28x28 grayscale images .* got 64x64 RGB"):
        judge_outputs(MnistJudge().eval(), torch.zeros(2, *EMOJI_SHAPE))
    judge, reason = try_judge(path, (1, 28, 28), "cpu", "emoji64")
    assert judge is None and reason == "the emoji64 judge reads 64x64 RGB images only, not 28x28 grayscale"
    judge, reason = try_judge(None, EMOJI_SHAPE, "cpu", "mnist")
    assert judge is None and reason == "the mnist judge reads 28x28 grayscale images only, not 64x64 RGB"
    judge, reason = try_judge(path, (1, 28, 28), "cpu", "fashion")                   # the file judges emoji64
    assert judge is None and "judges emoji64, not fashion" in reason
    with pytest.raises(JudgeError, match="judges emoji64, not mnist"):
        load_judge(path, dataset="mnist")
    grey = EvalContext(model=None, test_images=torch.zeros(1, 1, 28, 28, dtype=torch.uint8), judge=emoji)
    colour = EvalContext(model=None, test_images=torch.zeros(1, *EMOJI_SHAPE, dtype=torch.uint8), judge=emoji)
    assert not grey.has_judge and colour.has_judge


def test_a_card_that_disagrees_with_its_weights_is_refused(tmp_path):
    path = tmp_path / "bad.safetensors"
    save_judge(Judge(32, EMOJI_SHAPE, 9), path, {"format": JUDGE_FORMAT, "dataset": "emoji64",
                                                  "input_shape": [3, 64, 64], "classes": GROUPS[:5]})
    with pytest.raises(JudgeError, match="does not hold the judge its card describes"):
        load_judge(path, dataset="emoji64")


def test_every_judged_data_set_ships_a_judge_with_its_card():
    assert "emoji64" in JUDGED_DATASETS and JUDGE_INPUT_SHAPES["emoji64"] == EMOJI_SHAPE
    for dataset in JUDGED_DATASETS:
        judge = load_judge(dataset=dataset)
        card = json.loads(judge_path(dataset).with_suffix(".json").read_text())
        assert judge.header["dataset"] == card.get("dataset", "mnist") == dataset
        assert card["test_accuracy"] == judge.header["test_accuracy"]
        assert judge.input_shape == JUDGE_INPUT_SHAPES[dataset]
    emoji = load_judge(dataset="emoji64")
    card = emoji.header
    assert emoji.num_classes == 9 and card["classes"] == GROUPS and card["input_shape"] == [3, 64, 64]
    assert judge_path("emoji64").stat().st_size < 2_000_000
    assert card["test_correct"] == round(card["test_accuracy"] * card["test_images"])
    assert sum(c["images"] for c in card["per_class_test_accuracy"].values()) == card["test_images"]
    assert sum(c["correct"] for c in card["per_class_test_accuracy"].values()) == card["test_correct"]


@pytest.mark.slow
@pytest.mark.data
@emoji_installed
def test_shipped_emoji_judge_reads_its_test_set_as_its_card_says(emoji_root):
    from helpers import assert_judge_reads_its_test_set
    judge = load_judge(dataset="emoji64")
    train, test = emoji_splits(emoji_root)
    assert len(test) == judge.header["test_images"]
    predicted = judge_outputs(judge, test.images)[1].argmax(1)
    assert int((predicted == test.labels).sum()) == judge.header["test_correct"]
    assert judge.header["test_accuracy"] >= 0.75
    assert_judge_reads_its_test_set(judge, train, test, 0.75, floor_ratio=0.25,
                                    distort=lambda images: 255 - images)         # colour-inverted emoji


def test_a_small_data_set_is_compared_with_the_real_images_it_has():
    """emoji64 has 1,320 train and 330 test images: the metrics use them all, with as many samples as train
    images, so the model and its real-vs-real floor are measured at the same sample sizes."""
    from picks import GAN_PAIR
    from genlab.models import MODELS, build_model
    model = build_model(GAN_PAIR, dict(MODELS[GAN_PAIR].tiny, channels=3, image_size=64))
    g = torch.Generator().manual_seed(0)
    images = lambda n: torch.randint(0, 256, (n, *EMOJI_SHAPE), generator=g, dtype=torch.uint8)   # noqa: E731
    torch.manual_seed(0)
    context = EvalContext(model=model, train_images=images(132), test_images=images(33),
                          test_labels=torch.randint(9, (33,), generator=g), judge=Judge(32, EMOJI_SHAPE, 9).eval(),
                          num_samples=10000, batch_size=50)
    assert context.generated_count == 132
    assert set(applicable(context, quick=True)) >= {"fid", "kid", "precision_recall", "mode_coverage"}
    results = evaluate(context, ["fid", "mode_coverage"])
    assert (results["fid"]["generated_images"], results["fid"]["test_images"],
            results["fid"]["floor_train_images"]) == (132, 33, 132)
    assert len(results["mode_coverage"]["class_histogram"]) == 9
    assert math.isfinite(results["fid"]["fid"]) and math.isfinite(results["fid"]["fid_floor"])


def test_a_class_conditional_emoji_model_is_scored_against_the_nine_groups():
    from picks import CONDITIONAL
    from genlab.models import MODELS, build_model
    model = build_model(CONDITIONAL, dict(MODELS[CONDITIONAL].tiny, channels=3, image_size=64, num_classes=9))
    images = torch.randint(0, 256, (40, *EMOJI_SHAPE), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    context = EvalContext(model=model, train_images=images, test_images=images, test_labels=torch.arange(40) % 9,
                          judge=Judge(32, EMOJI_SHAPE, 9).eval(), num_samples=30, batch_size=30)
    assert "judge_accuracy" in applicable(context, quick=True)
    accuracy = evaluate(context, ["judge_accuracy"])["judge_accuracy"]["judge_accuracy"]
    assert 0.0 <= accuracy <= 1.0
    ten = EvalContext(model=build_model(CONDITIONAL, dict(MODELS[CONDITIONAL].tiny, channels=3, image_size=64,
                                                          num_classes=10)),
                      test_images=images, judge=Judge(32, EMOJI_SHAPE, 9).eval())
    assert "judge_accuracy" not in applicable(ten)                    # ten classes are not the nine groups


@pytest.mark.slow
@pytest.mark.data
@emoji_installed
def test_an_emoji_run_is_evaluated_by_the_emoji_judge(emoji_root, tmp_path):
    from genlab import load, train
    from genlab.eval import TrainingEvaluator, evaluate_checkpoint
    from helpers import tiny_config
    from picks import GAN_PAIR
    config = tiny_config(GAN_PAIR, dataset="emoji64", data_root=str(emoji_root), image_size=64, steps=2,
                         max_images=64)
    train(config, tmp_path / "run")
    report = evaluate_checkpoint(tmp_path / "run", metrics=["fid", "mode_coverage"])
    assert report["judge"]["dataset"] == "emoji64"
    train_count, test_count = (len(split) for split in emoji_splits(emoji_root))
    assert report["settings"]["generated_samples"] == train_count and report["settings"]["real_test_images"] == test_count
    fid = report["results"]["fid"]
    assert math.isfinite(fid["fid"]) and fid["fid"] > fid["fid_floor"] > 0 and fid["test_images"] == test_count
    with pytest.raises(ValueError, match="judges mnist, not emoji64"):               # the CLI's one line
        evaluate_checkpoint(tmp_path / "run", metrics=["fid"], judge_path=str(judge_path("mnist")))
    evaluator = TrainingEvaluator(config["train"])          # 2,000 quick samples: whole splits, 1,320 drawn
    logged = evaluator(load(tmp_path / "run"))
    assert evaluator.judge.header["dataset"] == "emoji64"
    assert {"eval/fid", "eval/coverage", "eval/precision"} <= set(logged)
    assert all(math.isfinite(v) for v in logged.values())
