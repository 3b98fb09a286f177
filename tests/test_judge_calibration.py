"""The judges' temperature (Guo 2017 temperature scaling): fitted on training images, it changes the
confidence of the softmax and nothing else (argmax, features, FID)."""
import pytest
import torch

from genlab.judge import JUDGED_DATASETS, fit_temperature, judge_outputs, judge_path, load_judge


def test_fit_temperature_recovers_the_temperature_that_made_the_labels():
    g = torch.Generator().manual_seed(0)
    scores = 3 * torch.randn(20000, 10, generator=g)                       # the true logits are scores / 0.5
    labels = torch.multinomial((scores / 0.5).softmax(1), 1, generator=g)[:, 0]
    assert fit_temperature(scores, labels) == pytest.approx(0.5, rel=0.05)
    assert fit_temperature(scores / 0.5, labels) == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("dataset", [d for d in JUDGED_DATASETS if judge_path(d).exists()])
def test_a_shipped_judges_temperature_scales_its_logits_and_keeps_its_argmax_and_features(dataset):
    judge = load_judge(dataset=dataset)
    temperature = judge.header["temperature"]
    if judge.header["temperature_note"].startswith("not calibrated"):      # an overfit judge keeps T = 1
        assert temperature == 1.0
    else:
        assert 0.2 < temperature < 5 and "first 10k training images" in judge.header["temperature_note"]
        before, after = judge.header["test_nll_before_after"]
        assert after <= before                                             # the test set's NLL does not get worse
    images = torch.rand(64, *judge.input_shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
    features, logits = judge_outputs(judge, images)
    with torch.no_grad():
        raw = judge(images)
    assert torch.allclose(logits * temperature, raw, atol=1e-4) and torch.equal(logits.argmax(1), raw.argmax(1))
    assert torch.allclose(features, judge.features(images), atol=1e-5)


@pytest.mark.data
def test_the_calibrated_mnist_judge_is_confident_on_real_test_digits_as_an_independent_classifier_is(mnist_data_root):
    """Real MNIST test digits read with confidence > 0.9: 92.5% before calibration (label smoothing makes the
    judge shy), about 98.6% after, in line with an independent classifier's 98.7%."""
    import genlab
    data = genlab.load_dataset(genlab.TrainConfig(dataset="mnist", data_root=str(mnist_data_root)), "test")
    _, logits = judge_outputs(load_judge(dataset="mnist"), data.images)
    assert (logits.softmax(1).max(1).values > 0.9).float().mean() > 0.97
