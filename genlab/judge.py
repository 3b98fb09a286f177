"""The judges: one small CNN classifier per data set (MNIST, Fashion-MNIST: 28x28 grayscale; emoji64:
64x64 RGB), trained once by `python -m genlab.judge --train --dataset NAME` and shipped as
`checkpoints/NAME-judge.safetensors`; the metrics use them frozen.

Its 128-d penultimate layer is the feature space of classifier-FID, KID and precision/recall
(the role Inception's pool3 plays for natural images); its softmax is the judge of class
histograms, cGAN accuracy and InfoGAN category purity. A data set is only ever judged by its own
judge (the card records which, with the input shape and the classes it reads).

    python -m genlab.judge --train --dataset emoji64 [--data-root ../shared/data] [--epochs 120]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .runs import atomic_write_bytes, atomic_write_json

JUDGE_FORMAT = "genlab-judge-1"              # cards name their data set
OLD_JUDGE_FORMAT = "genlab-mnist-judge-1"    # the first MNIST judge's card (no data set: MNIST)
CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
FEATURE_DIM = 128
MNIST_SHAPE = (1, 28, 28)                    # what a card without an input shape reads (the first two judges)


@dataclass(frozen=True)
class JudgeRecipe:
    """How a data set's judge is built and trained (the card records what was used)."""
    input_shape: tuple                       # (C, H, W) of the images it reads
    width: int                               # channels of the first conv
    epochs: int
    flips: bool = False                      # left-right flips (clothes and emoji are mirrored; digits are not)
    shift: int = 2                           # random translations of up to this many pixels
    batch_size: int = 128
    lr: float = 3e-3                         # peak of the one-cycle schedule
    weight_decay: float = 0.0                # AdamW's decoupled decay
    label_smoothing: float = 0.05
    dropout: float = 0.2


JUDGE_RECIPES = {
    "mnist": JudgeRecipe(MNIST_SHAPE, width=32, epochs=3),
    "fashion": JudgeRecipe(MNIST_SHAPE, width=64, epochs=10, flips=True),    # harder: twice as wide
    "emoji64": JudgeRecipe((3, 64, 64), width=32, epochs=120, flips=True, shift=4, batch_size=64,
                           weight_decay=5e-4, label_smoothing=0.1, dropout=0.3),  # 1,320 images: regularised
}
JUDGED_DATASETS = tuple(JUDGE_RECIPES)
JUDGE_WIDTHS = {dataset: recipe.width for dataset, recipe in JUDGE_RECIPES.items()}
JUDGE_INPUT_SHAPES = {dataset: recipe.input_shape for dataset, recipe in JUDGE_RECIPES.items()}


def judge_path(dataset: str) -> Path:
    """Where the shipped judge of a data set is: checkpoints/DATASET-judge.safetensors."""
    return CHECKPOINTS / f"{dataset}-judge.safetensors"


DEFAULT_JUDGE = judge_path("mnist")


class JudgeError(RuntimeError):
    """The judge checkpoint is missing, unreadable or not a genlab judge."""


def describe_shape(shape: tuple) -> str:
    """(1, 28, 28) -> '28x28 grayscale', (3, 64, 64) -> '64x64 RGB'."""
    channels, height, width = shape
    return f"{height}x{width} " + {1: "grayscale", 3: "RGB"}.get(channels, f"{channels}-channel")


class Judge(nn.Module):
    """x (B, C, S, S) in [-1, 1] -> k x (conv 3x3, BN, ReLU, max-pool), halving S until it is at most 4
    (k = 3 for 28x28, 4 for 64x64; channels w, 2w, 4w, 4w...) -> FC 128 (features) -> FC n_classes (logits).
    MNIST: w = 32, Fashion-MNIST: w = 64 (3 blocks, 3x3 at the end); emoji64: w = 32 (4 blocks, 4x4)."""

    def __init__(self, width: int = 32, input_shape: tuple = MNIST_SHAPE, num_classes: int = 10,
                 dropout: float = 0.2):
        super().__init__()
        def block(c_in, c_out):
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True),
                    nn.MaxPool2d(2)]
        self.width, self.input_shape, self.num_classes = width, tuple(input_shape), num_classes
        self.channels = judge_channels(width, self.input_shape[1])
        side = self.input_shape[1] // 2 ** len(self.channels)                   # 3 (28x28) or 4 (64x64)
        layers, c_in = [], self.input_shape[0]
        for c_out in self.channels:
            layers += block(c_in, c_out)
            c_in = c_out
        self.body = nn.Sequential(*layers, nn.Flatten(),                                      # (B, c*side*side)
                                  nn.Dropout(dropout), nn.Linear(c_in * side * side, FEATURE_DIM, bias=False),
                                  nn.BatchNorm1d(FEATURE_DIM), nn.ReLU(True))                # (B, 128)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(FEATURE_DIM, num_classes))  # (B, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (B, 128): the feature space of classifier-FID, KID and P/R."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def architecture(self) -> str:
        """The card's one-line description, e.g. '4x(conv3x3 32/64/128/128, BN, ReLU, maxpool) -> fc128 -> fc9'."""
        return (f"{len(self.channels)}x(conv3x3 {'/'.join(map(str, self.channels))}, BN, ReLU, maxpool) "
                f"-> fc{FEATURE_DIM} (features) -> fc{self.num_classes}")


MnistJudge = Judge    # the name of the first (MNIST-only) judge class


def judge_channels(width: int, image_size: int) -> list[int]:
    """Channels of the conv blocks: w, 2w, 4w, 4w, ... until the side is halved to at most 4."""
    channels = []
    while image_size > 4:
        channels.append(width * 2 ** min(len(channels), 2))
        image_size //= 2
    return channels


def check_images(images: torch.Tensor, input_shape: tuple = MNIST_SHAPE) -> torch.Tensor:
    """Images for a judge that reads `input_shape`: (B, C, H, W) floats in [-1, 1]; uint8 is converted."""
    if images.dtype == torch.uint8:
        images = images.float() / 127.5 - 1.0
    if images.dim() != 4 or tuple(images.shape[1:]) != tuple(input_shape):
        got = describe_shape(tuple(images.shape[1:])) if images.dim() == 4 else f"shape {tuple(images.shape)}"
        raise ValueError(f"this judge reads {describe_shape(tuple(input_shape))} images (B, "
                         f"{', '.join(map(str, input_shape))}), got {got} {tuple(images.shape)}: "
                         f"a data set is judged only by its own judge")
    return images.float()


@torch.no_grad()
def judge_outputs(judge: Judge, images: torch.Tensor, batch_size: int | None = None,
                  calibrated: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, 128), logits (N, n_classes)) of images (N, C, H, W) in [-1, 1], computed in batches
    (default: 1000 28x28 images, fewer of larger ones); the logits are divided by the judge's calibrated
    temperature (its card's; 1 if none), which leaves the argmax alone and makes softmax confidences
    mean what they say."""
    images = check_images(images, judge.input_shape)
    batch_size = batch_size or max(1, 784_000 // max(1, images[0].numel()))
    device = next(judge.parameters()).device
    temperature = getattr(judge, "header", {}).get("temperature", 1.0) if calibrated else 1.0
    features, logits = [], []
    for start in range(0, len(images), batch_size):
        h = judge.features(images[start:start + batch_size].to(device))
        features.append(h.float().cpu())
        logits.append(judge.head(h).float().cpu() / temperature)
    return torch.cat(features), torch.cat(logits)


def confident_share(logits: torch.Tensor, threshold: float = 0.9) -> float:
    """Share of images whose top softmax probability exceeds `threshold` (read clearly as one class)."""
    return (logits.softmax(1).max(1).values > threshold).float().mean().item()


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


def calibration_card(judge: Judge, train_images: torch.Tensor, train_labels: torch.Tensor,
                     test_images: torch.Tensor, test_labels: torch.Tensor) -> dict:
    """The card fields of a judge's temperature, fitted on the first 10k training images (not the test set),
    with what it changes on the test set: NLL and the share of images read with confidence > 0.9."""
    _, train_logits = judge_outputs(judge, train_images[:10000], calibrated=False)
    _, test_logits = judge_outputs(judge, test_images, calibrated=False)
    train_accuracy = (train_logits.argmax(1) == train_labels[:10000]).float().mean().item()
    test_accuracy = (test_logits.argmax(1) == test_labels).float().mean().item()
    if train_accuracy - test_accuracy > 0.05:          # an overfit judge: its training logits say nothing of test
        return {"temperature": 1.0,
                "temperature_note": f"not calibrated: the judge fits its training images ({train_accuracy:.1%} "
                                    f"against {test_accuracy:.1%} on test), so a temperature fitted on them would "
                                    f"only make it more confident"}
    temperature = fit_temperature(train_logits, train_labels[:10000])
    return {"temperature": round(temperature, 4),
            "temperature_note": "temperature scaling (Guo 2017), fitted by NLL on the first 10k training images; "
                                "divides the logits (argmax, features and FID unchanged)",
            "test_nll_before_after": [round(F.cross_entropy(test_logits, test_labels).item(), 4),
                                      round(F.cross_entropy(test_logits / temperature, test_labels).item(), 4)],
            "test_confident_share_before_after": [round(confident_share(test_logits), 4),
                                                  round(confident_share(test_logits / temperature), 4)]}


def load_judge(path: str | Path | None = None, device: str | torch.device = "cpu", dataset: str | None = None) -> Judge:
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
    try:
        shape = tuple(int(v) for v in header.get("input_shape", MNIST_SHAPE))
        classes = len(header["classes"]) if "classes" in header else int(header.get("num_classes", 10))
        judge = Judge(int(header.get("width", 32)), shape, classes, float(header.get("dropout", 0.2)))
        judge.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()})
    except (RuntimeError, TypeError, ValueError) as error:
        raise JudgeError(f"{path} does not hold the judge its card describes: {str(error)[:200]}") from None
    judge.header = header
    return judge.to(device).eval().requires_grad_(False)


def random_shift(x: torch.Tensor, generator: torch.Generator, pixels: int = 2, fill: float = -1.0) -> torch.Tensor:
    """Translate each image (B, C, H, W) by up to `pixels` in x and y, padding with the background `fill`."""
    b, _, height, width = x.shape
    padded = F.pad(x, (pixels,) * 4, value=fill)                                      # (B, C, H+2p, W+2p)
    dx, dy = torch.randint(0, 2 * pixels + 1, (2, b), generator=generator)
    return torch.stack([padded[i, :, dy[i]:dy[i] + height, dx[i]:dx[i] + width] for i in range(b)])


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2 (clothes and emoji are; digits are not)."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


@torch.no_grad()
def accuracy(judge: Judge, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of images the judge labels correctly."""
    _, logits = judge_outputs(judge, images)
    return (logits.argmax(1) == labels).float().mean().item()


@torch.no_grad()
def per_class_accuracy(judge: Judge, images: torch.Tensor, labels: torch.Tensor,
                       names: list[str]) -> dict[str, dict]:
    """{class name: {"correct": k, "images": n, "accuracy": k / n}} on a labelled set."""
    predicted = judge_outputs(judge, images)[1].argmax(1)
    out = {}
    for index, name in enumerate(names):
        mine = labels == index
        correct = int((predicted[mine] == index).sum())
        out[name] = {"correct": correct, "images": int(mine.sum()),
                     "accuracy": round(correct / max(1, int(mine.sum())), 4)}
    return out


@torch.no_grad()
def real_vs_real_fid(judge: Judge, train_images: torch.Tensor, test_images: torch.Tensor,
                     limit: int = 10000) -> tuple[float, int, int]:
    """(FID, train images, test images): the floor of the `fid` metric, up to `limit` images of each split."""
    from .metrics.distances import fid_from_features
    train, test = train_images[:limit], test_images[:limit]
    return fid_from_features(judge_outputs(judge, train)[0], judge_outputs(judge, test)[0]), len(train), len(test)


def train_judge(data_root: str | Path, out: str | Path | None = None, epochs: int | None = None,
                batch_size: int | None = None, seed: int = 0, dataset: str = "mnist",
                log=lambda line: print(line, flush=True)) -> dict:
    """Train a data set's judge on its train split by its recipe (AdamW, one-cycle LR, label smoothing,
    small random shifts, left-right flips where the data allow); write weights and a card (default: the
    shipped judge's path)."""
    from .config import TrainConfig
    from .data import emoji_list, load_dataset, to_signed
    if dataset not in JUDGED_DATASETS:
        raise ValueError(f"judges exist for {', '.join(JUDGED_DATASETS)}, not {dataset!r}")
    recipe = JUDGE_RECIPES[dataset]
    epochs, batch_size = epochs or recipe.epochs, batch_size or recipe.batch_size
    out = out or judge_path(dataset)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    config = TrainConfig(dataset=dataset, data_root=str(data_root))
    train_data, test_data = load_dataset(config, "train"), load_dataset(config, "test")
    if tuple(train_data.images.shape[1:]) != recipe.input_shape:
        raise ValueError(f"{dataset} images are {tuple(train_data.images.shape[1:])}, the recipe reads {recipe.input_shape}")
    x_train, y_train = to_signed(train_data.images), train_data.labels                 # (N, C, H, W)
    fill = float(x_train[:, :, 0, 0].median())                                        # the background: -1 or +1
    names = emoji_list()[2] if dataset == "emoji64" else [str(c) for c in range(train_data.num_classes)]
    judge = Judge(recipe.width, recipe.input_shape, train_data.num_classes, recipe.dropout)
    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    optimizer = torch.optim.AdamW(judge.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=epochs * steps_per_epoch)
    started = time.time()
    for epoch in range(epochs):
        judge.train()
        order = torch.randperm(len(x_train), generator=generator)
        for i in range(steps_per_epoch):
            index = order[i * batch_size:(i + 1) * batch_size]
            x = random_shift(x_train[index], generator, recipe.shift, fill)
            if recipe.flips:
                x = random_flip(x, generator)
            loss = F.cross_entropy(judge(x), y_train[index], label_smoothing=recipe.label_smoothing)
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
    predicted = judge_outputs(judge, test_data.images)[1].argmax(1)
    correct = int((predicted == test_data.labels).sum())
    floor, n_train, n_test = real_vs_real_fid(judge, train_data.images, test_data.images)
    calibration = calibration_card(judge, train_data.images, train_data.labels, test_data.images, test_data.labels)
    card = {"format": JUDGE_FORMAT, "dataset": dataset, "test_accuracy": correct / len(test_data),
            "test_correct": correct, "test_images": len(test_data), **calibration,
            "test_accuracy_note": f"fp16 weights, all {len(test_data)} {dataset} test images",
            "train_accuracy_first_10k": train_acc,
            "per_class_test_accuracy": per_class_accuracy(judge, test_data.images, test_data.labels, names),
            "fid_floor": floor, "fid_floor_note": f"real vs real: {n_train} train vs {n_test} test images, "
                                                  f"the fid metric's function on this judge's features",
            "epochs": epochs, "batch_size": batch_size, "seed": seed, "feature_dim": FEATURE_DIM,
            "train_seconds": round(time.time() - started, 1), "torch": torch.__version__,
            "recipe": asdict(replace(recipe, epochs=epochs, batch_size=batch_size)),
            "augmentation": f"shifts of up to {recipe.shift} px" + (", left-right flips" if recipe.flips else "")
                            + "; no colour changes",
            "width": judge.width, "dropout": recipe.dropout, "input_shape": list(judge.input_shape),
            "classes": names, "num_classes": judge.num_classes, "architecture": judge.architecture(),
            "parameters": sum(p.numel() for p in judge.parameters()),
            "input": f"(B, {', '.join(map(str, judge.input_shape))}) float in [-1, 1]"}
    save_judge(judge, out, card)
    return card


def save_judge(judge: Judge, out: str | Path, card: dict) -> None:
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
    parser.add_argument("--data-root", default="../shared/data",
                        help="Folder holding MNIST/raw (or FashionMNIST/raw; emoji64 renders into DATA_ROOT/cache).")
    parser.add_argument("--out", help="Where the judge is written (default: checkpoints/DATASET-judge.safetensors).")
    parser.add_argument("--epochs", type=int, help="Default: the data set's recipe (mnist 3, fashion 10, emoji64 120).")
    parser.add_argument("--batch-size", type=int, help="Default: the data set's recipe.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1 or args.batch_size is not None and args.batch_size < 1:
        parser.exit(2, "genlab.judge: error: --epochs and --batch-size must be at least 1\n")
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
    card = train_judge(args.data_root, args.out, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                       dataset=args.dataset)
    print(json.dumps(card, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
