"""Metrics on cases with known answers (issue 5), the registry choosing metrics by capability with
throw-away models registered here, the eval command end to end, the shipped judge."""
import json
import math

import pytest
import torch
from torch import nn

from genlab.models import (MODELS, GenerativeModel, HasLikelihood, LatentModel, LatentSpec, StepContext, build_model,
                           register_model, unregister_model)
from genlab.models.base import ImageConfig

from genlab import metrics
from genlab.metrics import (EvalContext, applicable, bits_per_dim, class_histogram, evaluate, fid_from_features,
                            frechet_distance, hungarian_accuracy, kernel_inception_distance, kl_to_uniform,
                            precision_recall, quick_log)


def test_identical_sets_give_fid_near_zero():
    x = torch.randn(3000, 32, generator=torch.Generator().manual_seed(0)) @ torch.randn(32, 32)
    assert fid_from_features(x, x) < 1e-6
    assert fid_from_features(x, x + 1.0) == pytest.approx(32.0, rel=1e-6)      # a shift adds |d|^2 only


def test_two_gaussians_match_the_closed_form():
    # Diagonal covariances: FID = |m1 - m2|^2 + sum (sqrt(s1) - sqrt(s2))^2.
    g = torch.Generator().manual_seed(1)
    m1, m2 = torch.randn(8, generator=g).double(), torch.randn(8, generator=g).double()
    s1, s2 = torch.rand(8, generator=g).double() + 0.1, torch.rand(8, generator=g).double() + 0.1
    expected = (m1 - m2).pow(2).sum() + (s1.sqrt() - s2.sqrt()).pow(2).sum()
    assert frechet_distance(m1, torch.diag(s1), m2, torch.diag(s2)) == pytest.approx(expected.item(), rel=1e-9)
    # Full covariances against scipy's sqrtm of C1 C2.
    import numpy as np
    from scipy.linalg import sqrtm
    a, b = torch.randn(6, 6, generator=g).double(), torch.randn(6, 6, generator=g).double()
    c1, c2 = a @ a.T + 0.1 * torch.eye(6, dtype=torch.float64), b @ b.T + 0.1 * torch.eye(6, dtype=torch.float64)
    reference = ((m1[:6] - m2[:6]).double().pow(2).sum().item() + np.trace(c1.numpy() + c2.numpy())
                 - 2 * np.trace(sqrtm(c1.numpy() @ c2.numpy())).real)
    assert frechet_distance(m1[:6], c1, m2[:6], c2) == pytest.approx(reference, rel=1e-7)
    # From samples: N(0, 1) vs N(3, 4) in 1-D gives 3^2 + (1 - 2)^2 = 10.
    x = torch.randn(200000, 1, generator=g)
    y = 3 + 2 * torch.randn(200000, 1, generator=g)
    assert fid_from_features(x, y) == pytest.approx(10.0, rel=0.02)


def test_kid_is_unbiased_near_zero_for_one_distribution_and_positive_otherwise():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(2000, 16, generator=g), torch.randn(2000, 16, generator=g)
    same, _ = kernel_inception_distance(x, y, subsets=20, subset_size=500)
    different, _ = kernel_inception_distance(x, y + 0.5, subsets=20, subset_size=500)
    assert abs(same) < 2e-3 and different > 20 * abs(same) and different > 0.01


def test_precision_recall_known_cases():
    g = torch.Generator().manual_seed(3)
    real = torch.randn(1000, 8, generator=g)
    assert precision_recall(real, real.clone()) == (1.0, 1.0)
    far = real + 100.0
    assert precision_recall(real, far) == (0.0, 0.0)
    # Fakes collapsed onto a small region of the real data: high precision, low recall.
    collapsed = real[:50].repeat(20, 1) + 1e-3 * torch.randn(1000, 8, generator=g)
    precision, recall = precision_recall(real, collapsed)
    assert precision > 0.95 and recall < 0.3


def test_class_histogram_and_kl_to_uniform():
    balanced = torch.arange(10).repeat(100)
    assert kl_to_uniform(class_histogram(balanced)) == pytest.approx(0.0, abs=1e-12)
    assert kl_to_uniform(class_histogram(torch.full((100,), 3))) == pytest.approx(math.log(10))


def test_perfect_classifier_scores_one_and_matching_recovers_a_permutation():
    labels = torch.randint(10, (5000,), generator=torch.Generator().manual_seed(4))
    assert hungarian_accuracy(labels, labels)[0] == 1.0
    permutation = torch.randperm(10, generator=torch.Generator().manual_seed(5))
    accuracy, matching = hungarian_accuracy(permutation[labels], labels)
    assert accuracy == 1.0
    assert all(permutation[true].item() == cluster for cluster, true in matching.items())
    noisy = permutation[labels].clone()
    noisy[:500] = (noisy[:500] + 1) % 10                                       # 10% of them wrong
    assert hungarian_accuracy(noisy, labels)[0] == pytest.approx(0.9, abs=0.01)


LIKELIHOOD_MODELS = sorted(name for name, cls in MODELS.items() if issubclass(cls, HasLikelihood))


def trained_tiny(name: str, steps: int = 15):
    """A registered model in its tiny config, trained a few steps on the synthetic set (so that, for a
    VAE, q(z|x) is not the prior)."""
    from genlab.config import TrainConfig
    from genlab.data import load_dataset
    torch.manual_seed(0)
    data = load_dataset(TrainConfig(dataset="synthetic", image_size=28))
    model = build_model(name, dict(MODELS[name].tiny, channels=1, image_size=28, num_classes=10))
    optimizers = model.make_optimizers()
    next_batch = data.batcher(32, torch.Generator().manual_seed(0))
    for step in range(steps):
        model.training_step(next_batch, optimizers, StepContext(step, torch.Generator().manual_seed(1)))
    return model.eval(), data


@pytest.mark.parametrize("name", LIKELIHOOD_MODELS)
def test_iwae_bound_of_model_nll_is_above_the_elbo_and_tightens_with_k(name):
    """Burda 2015 eq. 8 through the model's own `nll`: the bound on log p(x) tightens with k (and k = 1
    is the ELBO where the model also computes that directly)."""
    model, data = trained_tiny(name)
    x01 = torch.bernoulli(data.images[:100].float() / 255, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        bound = {k: -model.nll(x01, torch.Generator().manual_seed(k), k=k).mean().item() for k in (1, 10, 50)}
    assert bound[50] > bound[10] > bound[1]
    assert bound[50] < 0                                                       # a log-probability of binary pixels
    if hasattr(model, "negative_elbo"):
        with torch.no_grad():
            recon, kl = model.negative_elbo(x01 * 2 - 1, x01, torch.Generator().manual_seed(9))
        elbo = -(recon + kl).mean().item()
        assert bound[1] == pytest.approx(elbo, abs=0.05 * abs(elbo))           # k = 1 is the ELBO
        assert bound[10] > elbo


def test_bits_per_dim_of_a_fair_coin_per_pixel_is_one():
    assert bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0, rel=1e-12)
    assert bits_per_dim(3 * 32 * 32 * math.log(256), 3 * 32 * 32) == pytest.approx(8.0, rel=1e-12)


def test_inception_fid_gives_a_clear_message_without_library_or_weights(tmp_path):
    from genlab.inception import InceptionUnavailable, load_inception
    with pytest.raises(InceptionUnavailable, match="torch-fidelity|inception-weights"):
        load_inception(tmp_path / "missing-weights.pth")


def test_metric_registry_is_a_plain_dict_of_callables():
    assert {"fid", "kid", "precision_recall", "mode_coverage", "judge_accuracy", "categorical_accuracy",
            "category_purity", "elbo", "iwae", "inception_fid"} <= set(metrics.METRICS)
    assert all(callable(m.fn) and callable(m.applies) for m in metrics.METRICS.values())
    assert all(m.cost in metrics.COSTS and (not m.quick or m.log_keys) for m in metrics.METRICS.values())
    quick = {name for name, m in metrics.METRICS.items() if m.quick}
    assert {"fid", "elbo", "categorical_accuracy"} <= quick and not {"iwae", "inception_fid"} & quick
    assert all(key.startswith("eval/") for key in metrics.quick_log_keys())


# ---------------------------------------------------------------- chosen by capability, with throw-away models

class ToyModel(GenerativeModel):
    """Images that are noise through tanh: enough to be sampled, judged and measured."""
    config_class = ImageConfig

    def __init__(self, config):
        super().__init__(config)
        self.scale = nn.Parameter(torch.ones(()))

    def make_optimizers(self):
        return {"toy": torch.optim.SGD(self.parameters(), lr=0.1)}

    def training_step(self, batches, optimizers, ctx):
        return {}

    @torch.no_grad()
    def sample(self, n, rng=None, y=None):
        c, s = self.config.channels, self.config.image_size
        return torch.tanh(self.scale * torch.randn(n, c, s, s, generator=rng))


class ToyLikelihood(ToyModel):
    def nll(self, x01, rng=None, k=1):
        """A fair coin per pixel: exactly ln 2 nats per dimension, whatever x is."""
        return torch.full((len(x01),), x01[0].numel() * math.log(2), dtype=torch.float64)


class ToyConditional(ToyModel):
    conditional = True


class ToyCodes(LatentModel):
    """A latent model with one 10-way categorical code that its critic (training only) infers back."""
    config_class = ImageConfig
    training_only = ("critic",)

    def __init__(self, config):
        super().__init__(config)
        self.scale = nn.Parameter(torch.ones(()))
        self.critic = nn.Flatten()

    def make_optimizers(self):
        return {"toy": torch.optim.SGD(self.parameters(), lr=0.1)}

    def training_step(self, batches, optimizers, ctx):
        return {}

    def latent_spec(self):
        return LatentSpec(z_dim=4, categorical=[10])

    def generate(self, z, cat, **_):
        return torch.tanh(self.scale * z[:, :1, None, None].expand(-1, 1, 28, 28))

    def infer_codes(self, x):
        return {"cat": (self.critic(x).mean(1, keepdim=True) > 0).long()}


TOYS = {"toy-plain": ToyModel, "toy-likelihood": ToyLikelihood, "toy-conditional": ToyConditional,
        "toy-codes": ToyCodes}


@pytest.fixture
def toys():
    """The throw-away models, registered for one test and removed after it."""
    for name, cls in TOYS.items():
        register_model(name)(cls)
    try:
        yield {name: build_model(name, {"channels": 1, "image_size": 28, "num_classes": 10}) for name in TOYS}
    finally:
        for name in TOYS:
            unregister_model(name)


def toy_context(model, shape=(1, 28, 28), judge=True, num_samples=120):
    from genlab.judge import MnistJudge
    torch.manual_seed(0)                                  # the untrained judge's weights
    g = torch.Generator().manual_seed(0)
    images = lambda n: torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)   # noqa: E731
    return EvalContext(model=model, train_images=images(150), test_images=images(150),
                       test_labels=torch.randint(10, (150,), generator=g),
                       judge=MnistJudge().eval() if judge else None, num_samples=num_samples, iwae_k=4,
                       iwae_images=20, elbo_images=30, batch_size=50)


def test_the_registry_chooses_metrics_by_capability(toys):
    sample_quality = {"fid", "kid", "precision_recall", "mode_coverage"}
    chosen = {name: set(applicable(toy_context(model))) for name, model in toys.items()}
    assert chosen["toy-plain"] == sample_quality
    assert chosen["toy-likelihood"] == sample_quality | {"elbo", "iwae"}
    assert chosen["toy-conditional"] == sample_quality | {"judge_accuracy"}
    assert chosen["toy-codes"] == sample_quality | {"categorical_accuracy", "category_purity"}
    assert set(applicable(toy_context(toys["toy-likelihood"]), quick=True)) == sample_quality | {"elbo"}
    # no judge for RGB data: what is left is the likelihood and (optional) Inception FID
    rgb = toy_context(toys["toy-likelihood"], shape=(3, 32, 32))
    assert set(applicable(rgb)) == {"elbo", "iwae", "inception_fid"}
    assert set(applicable(toy_context(toys["toy-plain"], judge=False))) == set()


def test_codes_an_inference_export_cannot_infer_are_skipped_with_the_reason(toys, tmp_path):
    import genlab
    from genlab.checkpoint import save_checkpoint
    save_checkpoint(tmp_path / "full.safetensors", toys["toy-codes"], {"step": 1})
    exported = genlab.load(genlab.export_checkpoint(tmp_path / "full.safetensors", tmp_path / "inference.safetensors",
                                                    drop=ToyCodes.training_only))
    context = toy_context(exported)
    assert set(applicable(context)) == {"fid", "kid", "precision_recall", "mode_coverage", "category_purity"}
    assert "without its critic" in context.skipped["categorical_accuracy"]
    assert "category_purity" in evaluate(context)                # generating needs no critic


def test_likelihood_metrics_report_nats_and_bits_per_dim_from_model_nll(toys):
    results = evaluate(toy_context(toys["toy-likelihood"]), ["elbo", "iwae"])
    for name in ("elbo", "iwae"):
        assert results[name]["nll"] == pytest.approx(784 * math.log(2), rel=1e-12)
        assert results[name]["bits_per_dim"] == pytest.approx(1.0, rel=1e-12)
    assert results["elbo"]["elbo"] == -results["elbo"]["nll"] and results["elbo"]["elbo_images"] == 30
    assert results["iwae"]["iwae_images"] == 20 and results["iwae"]["iwae_k"] == 4
    with pytest.raises(ValueError, match="does not apply"):
        evaluate(toy_context(toys["toy-plain"]), ["elbo"])


def test_quick_log_gives_the_declared_eval_keys_of_what_applies(toys):
    logs = {name: quick_log(toy_context(model)) for name, model in toys.items()}
    common = {"eval/fid", "eval/kid_x1000", "eval/precision", "eval/recall", "eval/coverage", "eval/kl_uniform",
              "eval/confident"}
    assert set(logs["toy-plain"]) == common
    assert set(logs["toy-likelihood"]) == common | {"eval/elbo", "eval/elbo_bits_per_dim"}
    assert logs["toy-likelihood"]["eval/elbo_bits_per_dim"] == pytest.approx(1.0)
    assert set(logs["toy-conditional"]) == common | {"eval/judge_acc"}
    assert set(logs["toy-codes"]) == common | {"eval/cat_acc", "eval/purity"}
    assert all(isinstance(v, float) and math.isfinite(v) for log in logs.values() for v in log.values())
    assert set(metrics.quick_log_keys()) >= set().union(*logs.values())


def test_class_accuracy_asks_the_model_for_the_classes_it_scores(toys):
    """judge_accuracy compares the judge's reading of sample(n, rng, y=labels) with those labels."""
    class Obedient(ToyConditional):
        """For class y, draws an image the judge reads as y (where one was found among noise images)."""
        def sample(self, n, rng=None, y=None):
            return self.prototypes[y]
    model = Obedient(toys["toy-conditional"].config)
    context = toy_context(model)
    images = torch.tanh(3 * torch.randn(1000, 1, 28, 28, generator=torch.Generator().manual_seed(1)))
    from genlab.judge import judge_outputs
    read = judge_outputs(context.judge, images)[1].argmax(1)
    present = read.unique()
    model.prototypes = torch.stack([images[(read == c).nonzero()[0, 0]] if c in present else images[read != c][0]
                                    for c in range(10)])
    result = evaluate(context, ["judge_accuracy"])["judge_accuracy"]["judge_accuracy"]
    labels = context.samples()[0]
    assert result == pytest.approx(torch.isin(labels, present).float().mean().item())
    assert result > 0.1


# ---------------------------------------------------------------- with the shipped judge and real MNIST

@pytest.mark.slow
@pytest.mark.data
def test_shipped_judge_is_accurate_and_real_vs_real_fid_is_small(mnist_data_root):
    from genlab.config import TrainConfig
    from genlab.data import load_dataset
    from genlab.judge import load_judge
    from helpers import assert_judge_reads_its_test_set
    judge = load_judge()
    assert judge.header["test_accuracy"] >= 0.993
    config = TrainConfig(dataset="mnist", data_root=str(mnist_data_root))
    assert_judge_reads_its_test_set(judge, load_dataset(config, "train"), load_dataset(config, "test"), 0.993)


def eval_round_trip(name: str, tmp_path, data_root):
    """Train a registered model 2 steps on MNIST with eval_every, then `python -m genlab.eval RUN`: the
    training log and the report hold exactly the metrics that apply to what the model can do."""
    from genlab import load, train
    from genlab.eval import main
    from genlab.judge import MnistJudge
    run = tmp_path / name
    train({"train": {"model": name, "dataset": "mnist", "data_root": str(data_root), "steps": 2,
                     "batch_size": 16, "log_every": 1, "eval_every": 2, "max_images": 512},
           "model": MODELS[name].tiny}, run)
    shape_only = EvalContext(model=load(run), test_images=torch.zeros(1, 1, 28, 28, dtype=torch.uint8),
                             test_labels=torch.zeros(1), judge=MnistJudge())
    expected_logs = {key for metric in applicable(shape_only, quick=True)
                     for key in metrics.METRICS[metric].log_keys.values()}
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    logged = [{key for key in line if key.startswith("eval/")} for line in lines]
    assert expected_logs >= {"eval/fid", "eval/coverage"} and expected_logs in logged
    assert main([str(run), "--samples", "300", "--iwae-k", "5", "--iwae-images", "50"]) == 0
    results = json.loads((run / "eval.json").read_text())["results"]
    assert set(results) == set(applicable(shape_only)) - {"inception_fid"}
    assert results["fid"]["fid"] > results["fid"]["fid_floor"] >= 0
    assert 1 <= results["mode_coverage"]["classes_covered"] <= 10
    assert "| fid: fid |" in (run / "eval.md").read_text()
    return results


@pytest.mark.slow
@pytest.mark.data
def test_eval_command_end_to_end_on_a_tiny_run_with_codes(tmp_path, mnist_data_root):
    """A model with categorical codes gets the most metrics: the code accuracy and purity besides FID."""
    with_codes = [name for name in sorted(MODELS) if metrics.categorical_codes(
        build_model(name, dict(MODELS[name].tiny, channels=1, image_size=28, num_classes=10)))]
    results = eval_round_trip(with_codes[0], tmp_path, mnist_data_root)
    assert 0.1 <= results["categorical_accuracy"]["cat_acc"] <= 1
    assert 0.1 <= results["category_purity"]["purity_mean"] <= 1


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_eval_command_end_to_end_for_every_registered_model(name, tmp_path, mnist_data_root):
    eval_round_trip(name, tmp_path, mnist_data_root)


def test_eval_of_an_rgb_run_reports_why_inception_fid_is_skipped(tmp_path):
    """RGB data: Inception FID is optional; without torch-fidelity or weights the report says why."""
    from genlab import train
    from genlab.eval import main
    run = tmp_path / "rgb"
    name = sorted(MODELS)[0]
    train({"train": {"model": name, "dataset": "synthetic", "channels": 3, "image_size": 32, "steps": 1,
                     "batch_size": 8}, "model": MODELS[name].tiny}, run)
    weights = tmp_path / "missing.pth"
    assert main([str(run), "--samples", "50", "--iwae-k", "2", "--iwae-images", "10",
                 "--inception-weights", str(weights)]) == 0
    report = json.loads((run / "eval.json").read_text())
    assert "inception_fid" in report["skipped"] and "fid" not in report["results"]
    assert "torch-fidelity" in report["skipped"]["inception_fid"] or str(weights) in report["skipped"]["inception_fid"]
    with pytest.raises(SystemExit) as exit_info:
        main([str(run), "--samples", "50", "--metrics", "inception_fid", "--inception-weights", str(weights)])
    assert exit_info.value.code == 2


def test_the_confident_share_counts_images_read_above_point_nine():
    from genlab.judge import confident_share
    logits = torch.tensor([[10.0, 0, 0], [0.1, 0, 0], [0, 0, 3.0], [0, 5.0, 0]])   # top p: 1.0, 0.36, 0.91, 0.99
    assert confident_share(logits) == 0.75 and confident_share(logits, threshold=0.95) == 0.5


def test_the_iwae_bound_averages_binarizations_of_the_test_set_and_reports_each():
    from tests.picks import BINARY_LIKELIHOOD
    torch.manual_seed(0)
    model = build_model(BINARY_LIKELIHOOD, dict(MODELS[BINARY_LIKELIHOOD].tiny)).eval()
    images = torch.randint(0, 256, (12, 1, 28, 28), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    context = lambda seeds: EvalContext(model=model, test_images=images, iwae_k=3, iwae_images=12,   # noqa: E731
                                        binarize_seeds=seeds)
    three = evaluate(context((0, 1, 2)), ["iwae"])["iwae"]
    one = evaluate(context((0,)), ["iwae"])["iwae"]
    assert len(set(three["nll_by_binarization"])) == 3                   # three different draws of the pixels
    assert three["nll_by_binarization"][0] == pytest.approx(one["nll"], rel=1e-12)
    assert three["nll"] == pytest.approx(sum(three["nll_by_binarization"]) / 3, rel=1e-12)
    assert three["binarization_spread"] == pytest.approx(max(three["nll_by_binarization"])
                                                         - min(three["nll_by_binarization"]))
    assert "nll_by_binarization" not in one and three["iwae_images"] == 12
