"""The judges: one small CNN classifier per 28x28 grayscale data set (MNIST, Fashion-MNIST), trained
once by `python -m genlab.judge --train --dataset NAME` and shipped as
`checkpoints/NAME-judge.safetensors`; the metrics use them frozen.

Its 128-d penultimate layer is the feature space of classifier-FID, KID and precision/recall
(the role Inception's pool3 plays for natural images); its softmax is the judge of class
histograms, cGAN accuracy and InfoGAN category purity. A data set is only ever judged by its own
judge (the card records which).

    python -m genlab.judge --train --dataset fashion [--data-root ../shared/data] [--epochs 3]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .runs import atomic_write_bytes, atomic_write_json

JUDGE_FORMAT = "genlab-judge-1"              # cards name their data set
OLD_JUDGE_FORMAT = "genlab-mnist-judge-1"    # the first MNIST judge's card (no data set: MNIST)
CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
JUDGED_DATASETS = ("mnist", "fashion")       # 28x28 grayscale, 10 classes
JUDGE_WIDTHS = {"mnist": 32, "fashion": 64}  # channels of the first conv (Fashion-MNIST is harder)
FEATURE_DIM = 128


def judge_path(dataset: str) -> Path:
    """Where the shipped judge of a data set is: checkpoints/DATASET-judge.safetensors."""
    return CHECKPOINTS / f"{dataset}-judge.safetensors"


DEFAULT_JUDGE = judge_path("mnist")


class JudgeError(RuntimeError):
    """The judge checkpoint is missing, unreadable or not a genlab judge."""


class MnistJudge(nn.Module):
    """x (B, 1, 28, 28) in [-1, 1] -> 3x(conv 3x3, BN, ReLU, pool; w, 2w, 4w channels) -> FC 128 (features)
    -> FC 10 (logits); the judge of every 28x28 grayscale data set (MNIST: w = 32, Fashion-MNIST: w = 64),
    each with its own weights."""

    def __init__(self, width: int = 32):
        super().__init__()
        def block(c_in, c_out):
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True),
                    nn.MaxPool2d(2)]
        self.width = width
        self.body = nn.Sequential(*block(1, width), *block(width, 2 * width), *block(2 * width, 4 * width),
                                  nn.Flatten(),                                                  # (B, 4w*3*3)
                                  nn.Dropout(0.2), nn.Linear(4 * width * 3 * 3, FEATURE_DIM, bias=False),
                                  nn.BatchNorm1d(FEATURE_DIM), nn.ReLU(True))                   # (B, 128)
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(FEATURE_DIM, 10))                  # (B, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (B, 128): the feature space of classifier-FID, KID and P/R."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def check_images(images: torch.Tensor) -> torch.Tensor:
    """Images for the judge: (B, 1, 28, 28) floats in [-1, 1]; uint8 is converted."""
    if images.dtype == torch.uint8:
        images = images.float() / 127.5 - 1.0
    if images.dim() != 4 or tuple(images.shape[1:]) != (1, 28, 28):
        raise ValueError(f"the judge takes (B, 1, 28, 28) images, got {tuple(images.shape)}; "
                         f"it judges 28x28 grayscale (MNIST, Fashion-MNIST) models only")
    return images.float()


@torch.no_grad()
def judge_outputs(judge: MnistJudge, images: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, 128), logits (N, 10)) of images (N, 1, 28, 28) in [-1, 1], computed in batches; the
    logits are divided by the judge's calibrated temperature (its card's; 1 if none), which leaves the
    argmax alone and makes softmax confidences mean what they say."""
    images = check_images(images)
    device = next(judge.parameters()).device
    temperature = getattr(judge, "header", {}).get("temperature", 1.0)
    features, logits = [], []
    for start in range(0, len(images), batch_size):
        h = judge.features(images[start:start + batch_size].to(device))
        features.append(h.float().cpu())
        logits.append(judge.head(h).float().cpu() / temperature)
    return torch.cat(features), torch.cat(logits)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Temperature scaling (Guo et al. 2017, sec. 4.2): the T > 0 minimizing the NLL of softmax(logits / T)."""
    log_t = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(logits.double() / log_t.double().exp(), labels)
        loss.backward()
        return loss
    optimizer.step(closure)
    return float(log_t.detach().exp())


def calibration_card(judge: MnistJudge, train_images: torch.Tensor, train_labels: torch.Tensor,
                     test_images: torch.Tensor, test_labels: torch.Tensor) -> dict:
    """The card fields of a judge's temperature, fitted on the first 10k training images (not the test set),
    with what it changes on the test set: NLL and the share of images read with confidence > 0.9."""
    judge.header = {}                                                    # raw logits (temperature 1)
    _, train_logits = judge_outputs(judge, train_images[:10000])
    _, test_logits = judge_outputs(judge, test_images)
    temperature = fit_temperature(train_logits, train_labels[:10000])
    confident = lambda logits: (logits.softmax(1).max(1).values > 0.9).float().mean().item()   # noqa: E731
    return {"temperature": round(temperature, 4),
            "temperature_note": "temperature scaling (Guo 2017), fitted by NLL on the first 10k training images; "
                                "divides the logits (argmax, features and FID unchanged)",
            "test_nll_before_after": [round(F.cross_entropy(test_logits, test_labels).item(), 4),
                                      round(F.cross_entropy(test_logits / temperature, test_labels).item(), 4)],
            "test_confident_share_before_after": [round(confident(test_logits), 4),
                                                  round(confident(test_logits / temperature), 4)]}


def load_judge(path: str | Path | None = None, device: str | torch.device = "cpu", dataset: str | None = None) -> MnistJudge:
    """The frozen judge (eval mode, no gradients) from its safetensors file (default: the shipped judge of
    `dataset`, MNIST's if None); nothing is unpickled. A judge of another data set than `dataset` is refused."""
    from safetensors import SafetensorError, safe_open
    path = Path(path) if path else judge_path(dataset or "mnist")
    if not path.exists():
        raise JudgeError(f"no {dataset or 'mnist'} judge at {path}; train one with `python -m genlab.judge --train "
                         f"--dataset {dataset or 'mnist'} --data-root DATA_ROOT`")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = json.loads((f.metadata() or {}).get("genlab_judge", "{}"))
            weights = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise JudgeError(f"{path} is not a readable judge checkpoint: {error}") from None
    if header.get("format") not in (JUDGE_FORMAT, OLD_JUDGE_FORMAT):
        raise JudgeError(f"{path} is not a genlab judge (format {header.get('format')!r})")
    header.setdefault("dataset", "mnist")
    if dataset is not None and header["dataset"] != dataset:
        raise JudgeError(f"{path} judges {header['dataset']}, not {dataset}")
    judge = MnistJudge(int(header.get("width", 32)))
    try:
        judge.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()})
    except RuntimeError as error:
        raise JudgeError(f"{path} does not hold the judge its card describes: {str(error)[:200]}") from None
    judge.header = header
    return judge.to(device).eval().requires_grad_(False)


def random_shift(x: torch.Tensor, generator: torch.Generator, pixels: int = 2) -> torch.Tensor:
    """Translate each image by up to `pixels` in x and y (padding with the background, -1)."""
    b = x.shape[0]
    padded = F.pad(x, (pixels,) * 4, value=-1.0)                                      # (B, 1, 32, 32)
    dx, dy = torch.randint(0, 2 * pixels + 1, (2, b), generator=generator)
    rows = (dy[:, None] + torch.arange(28)[None])                                     # (B, 28)
    cols = (dx[:, None] + torch.arange(28)[None])                                     # (B, 28)
    return padded[torch.arange(b)[:, None, None], 0, rows[:, :, None], cols[:, None, :]][:, None]


@torch.no_grad()
def accuracy(judge: MnistJudge, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of images the judge labels correctly."""
    _, logits = judge_outputs(judge, images)
    return (logits.argmax(1) == labels).float().mean().item()


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2 (clothes are; digits are not)."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def train_judge(data_root: str | Path, out: str | Path | None = None, epochs: int = 3, batch_size: int = 128,
                seed: int = 0, dataset: str = "mnist", log=lambda line: print(line, flush=True)) -> dict:
    """Train a data set's judge on its train split (Adam, one-cycle LR, small random shifts, and left-right
    flips for Fashion-MNIST); write weights and a card (default: the shipped judge's path)."""
    from .config import TrainConfig
    from .data import load_dataset, to_signed
    if dataset not in JUDGED_DATASETS:
        raise ValueError(f"judges exist for {', '.join(JUDGED_DATASETS)}, not {dataset!r}")
    out = out or judge_path(dataset)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    config = TrainConfig(dataset=dataset, data_root=str(data_root))
    train_data, test_data = load_dataset(config, "train"), load_dataset(config, "test")
    x_train, y_train = to_signed(train_data.images), train_data.labels                # (60000, 1, 28, 28)
    judge = MnistJudge(JUDGE_WIDTHS[dataset])
    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    optimizer = torch.optim.Adam(judge.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=epochs * steps_per_epoch)
    started = time.time()
    for epoch in range(epochs):
        judge.train()
        order = torch.randperm(len(x_train), generator=generator)
        for i in range(steps_per_epoch):
            index = order[i * batch_size:(i + 1) * batch_size]
            x = random_shift(x_train[index], generator)
            if dataset == "fashion":
                x = random_flip(x, generator)
            loss = F.cross_entropy(judge(x), y_train[index], label_smoothing=0.05)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        judge.eval()
        test_acc = accuracy(judge, test_data.images, test_data.labels)
        log(f"epoch {epoch + 1}/{epochs}: loss {loss.item():.4f}, test accuracy {test_acc:.4%}, "
            f"{time.time() - started:.0f} s")
    train_acc = accuracy(judge, train_data.images[:10000], train_data.labels[:10000])
    judge.load_state_dict({k: v.half().float() if v.is_floating_point() else v   # what fp16 storage keeps
                           for k, v in judge.state_dict().items()})
    test_acc = accuracy(judge, test_data.images, test_data.labels)
    calibration = calibration_card(judge, train_data.images, train_data.labels, test_data.images, test_data.labels)
    card = {"format": JUDGE_FORMAT, "dataset": dataset, "test_accuracy": test_acc, **calibration,
            "test_accuracy_note": f"fp16 weights, all {len(test_data)} {dataset} test images",
            "train_accuracy_first_10k": train_acc,
            "epochs": epochs, "batch_size": batch_size, "seed": seed, "feature_dim": FEATURE_DIM,
            "train_seconds": round(time.time() - started, 1), "torch": torch.__version__,
            "augmentation": "shifts of up to 2 px" + (", left-right flips" if dataset == "fashion" else ""),
            "width": judge.width,
            "architecture": f"3x(conv3x3 {judge.width}/{2 * judge.width}/{4 * judge.width}, BN, ReLU, maxpool) "
                            f"-> fc128 (features) -> fc10",
            "input": "(B, 1, 28, 28) float in [-1, 1]"}
    save_judge(judge, out, card)
    return card


def save_judge(judge: MnistJudge, out: str | Path, card: dict) -> None:
    """Weights as fp16 safetensors with the card as JSON metadata, plus a human-readable card beside it."""
    from safetensors.torch import save
    tensors = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in judge.state_dict().items()}
    out = Path(out)
    atomic_write_bytes(out, save(tensors, metadata={"genlab_judge": json.dumps(card)}))
    atomic_write_json(out.with_suffix(".json"), card)


def calibrate(dataset: str, data_root: str | Path, path: str | Path | None = None) -> int:
    """Refit the temperature of a judge file in place (weights unchanged) and print its card."""
    from .config import TrainConfig
    from .data import load_dataset
    path = Path(path) if path else judge_path(dataset)
    try:
        judge = load_judge(path, dataset=dataset)
    except JudgeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    config = TrainConfig(dataset=dataset, data_root=str(data_root))
    train_data, test_data = load_dataset(config, "train"), load_dataset(config, "test")
    header = dict(judge.header)
    header.update(calibration_card(judge, train_data.images, train_data.labels, test_data.images, test_data.labels))
    save_judge(judge, path, header)
    print(json.dumps(header, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genlab.judge", description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", action="store_true", help="Train the judge and write it to --out.")
    parser.add_argument("--calibrate", action="store_true", help="Fit the temperature of an existing judge (--out "
                        "or the shipped one) and rewrite its card; the weights stay as they are.")
    parser.add_argument("--dataset", default="mnist", choices=JUDGED_DATASETS)
    parser.add_argument("--data-root", default="../shared/data", help="Folder holding MNIST/raw (or FashionMNIST/raw).")
    parser.add_argument("--out", help="Where the judge is written (default: checkpoints/DATASET-judge.safetensors).")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.calibrate:
        return calibrate(args.dataset, args.data_root, args.out)
    if not args.train:
        try:
            judge = load_judge(args.out, dataset=args.dataset)
        except JudgeError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(json.dumps(judge.header, indent=2))
        return 0
    card = train_judge(args.data_root, args.out, epochs=args.epochs, seed=args.seed, dataset=args.dataset)
    print(json.dumps(card, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
