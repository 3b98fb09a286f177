"""Data sets, held whole as one uint8 tensor on the training device and batched by random index.

`load_dataset(config, device)` returns an `ImageData`; `ImageData.batcher(batch, generator)` gives
a `next_batch()` that returns images in [-1, 1] and labels, normalized on the device.

Nothing is written into a folder of images a user points at: the decoded cache of an image folder
lives under data_root/cache. On a public server (`settings.public` with builtin_data_only) only the
built-in data sets under the server's data root are loaded (`check_public_data`).
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import TrainConfig

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
BUILTIN_DATASETS = ("mnist", "fashion", "emoji64", "celeba64", "synthetic")  # no path of a visitor's choosing
FASHION_SYSTEM_FOLDER = Path("/usr/share/datasets/fashion-mnist")       # Debian's dataset-fashion-mnist
EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")  # Debian's fonts-noto-color-emoji
EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")            # Debian's unicode-data
NATIVE_SHAPES = {"mnist": (1, 28, 10), "fashion": (1, 28, 10), "emoji64": (3, 64, 9), "celeba64": (3, 64, 1)}
ROOTED_DATASETS = ("mnist", "fashion", "celeba64")      # read from (or downloaded into) a data root


class DataError(RuntimeError):
    """A data set that cannot be found or read; the message names the folder and the layout expected."""


@dataclass
class ImageData:
    """A whole data set in memory: images (N, C, H, W) uint8 and labels (N,) int64."""
    name: str
    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.images.shape[2]

    def to(self, device) -> "ImageData":
        return ImageData(self.name, self.images.to(device), self.labels.to(device), self.num_classes)

    def batcher(self, batch_size: int, generator: torch.Generator,
                memory_format: torch.memory_format | None = None):
        """A function returning random batches (x in [-1, 1] (B, C, H, W) float, y (B,)), on the data's device."""
        n = len(self)

        def next_batch():
            index = torch.randint(n, (batch_size,), generator=generator, device=self.images.device)
            x = self.images[index]                                            # (B, C, H, W) uint8
            if memory_format is not None:
                x = x.contiguous(memory_format=memory_format)                 # reorder the small uint8 copy
            return x.float().div_(127.5).sub_(1.0), self.labels[index]
        return next_batch


def to_signed(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return images_uint8.float() / 127.5 - 1.0


def check_public_data(config: TrainConfig, settings) -> None:
    """On a public server with builtin_data_only: a built-in data set under the server's data root,
    no data path; otherwise a DataError (which names no other path)."""
    if settings is None or not (settings.public and settings.limits.builtin_data_only):
        return
    if config.dataset not in BUILTIN_DATASETS or config.data_path:
        raise DataError(f"this server trains only on its built-in data sets ({', '.join(BUILTIN_DATASETS)}); "
                        f"a data path cannot be chosen")
    if Path(config.data_root).resolve() != Path(settings.data_root).resolve():
        raise DataError("this server trains only on its built-in data sets; the data root cannot be chosen")


def load_dataset(config: TrainConfig, split: str = "train", settings=None) -> ImageData:
    """The data set a TrainConfig names, on the CPU (the training loop moves it to its device).
    With public `settings` (genlab.settings.Settings), only the built-in data sets are loaded."""
    check_public_data(config, settings)
    loaders = {"mnist": load_mnist, "fashion": load_fashion, "emoji64": load_emoji64, "celeba64": load_celeba64,
               "imagefolder": load_imagefolder, "synthetic": load_synthetic}
    data = loaders[config.dataset](config, split)
    if config.max_images is not None and len(data) > config.max_images:
        data = ImageData(data.name, data.images[:config.max_images], data.labels[:config.max_images],
                         data.num_classes)
    return data


# ---------------------------------------------------------------- is the data there? (cheap, no decode)
@dataclass(frozen=True)
class DataCheck:
    """Whether a data set is where a config points, how many images, and one line saying so."""
    found: bool
    images: int | None          # training images counted from file headers or names (None: unknown)
    downloadable: bool          # missing, but Start can download it into the data root
    message: str


def data_folder(dataset: str, data_root: str | Path, data_path: str | Path | None = None) -> Path:
    """The folder the loader of `dataset` reads (MNIST: the one holding MNIST/raw)."""
    if data_path:
        return Path(data_path)
    root = Path(data_root)
    return root / "celeba" / "img_align_celeba" if dataset == "celeba64" else root


def mnist_count(raw: Path) -> int | None:
    """Training images in MNIST/raw (or Fashion-MNIST's, same file names), from the IDX header of train-images (8 bytes; .gz read the same);
    None when the four files are not all there."""
    import gzip
    if not all((raw / name).is_file() or (raw / f"{name}.gz").is_file() for name in MNIST_FILES):
        return None
    images = raw / MNIST_FILES[0]
    try:
        opener = open if images.is_file() else gzip.open
        with opener(images if images.is_file() else raw / f"{MNIST_FILES[0]}.gz", "rb") as f:
            header = f.read(8)
    except OSError:
        return None
    if len(header) < 8 or int.from_bytes(header[:4], "big") != 2051:            # IDX magic of uint8 images
        return None
    return int.from_bytes(header[4:8], "big")


def count_images(folder: Path, limit: int = 1_000_000) -> int:
    """Image files under `folder` (names only, nothing decoded), counting at most `limit`."""
    count = 0
    for _, _, files in os.walk(folder):
        count += sum(1 for name in files if Path(name).suffix.lower() in IMAGE_SUFFIXES)
        if count >= limit:
            return limit
    return count


def check_data(dataset: str, data_root: str | Path, data_path: str | Path | None = None,
               shown_root: str | None = None) -> DataCheck:
    """Whether `dataset` is found where a config points, read from file names and headers only.
    `shown_root` replaces the data root's path in the message (a public server names no paths)."""
    if dataset == "synthetic":
        return DataCheck(True, 2048, False, "synthetic: 2,048 images made in code, nothing to find")
    if dataset == "mnist":
        folder = data_folder(dataset, data_root, data_path)
        where = f"{shown_root or folder}/MNIST/raw"
        count = mnist_count(folder / "MNIST" / "raw")
        if count is not None:
            return DataCheck(True, count, False, f"MNIST found in {where}: {count:,} training images")
        return DataCheck(False, None, True, f"MNIST not found in {where}; Start downloads it there "
                                            f"(about 12 MB, needs internet)")
    if dataset == "fashion":
        folder = data_folder(dataset, data_root, data_path)
        where = f"{shown_root or folder}/FashionMNIST/raw"
        system = "the system's dataset-fashion-mnist package" if shown_root else str(FASHION_SYSTEM_FOLDER)
        for raw, shown in ((folder / "FashionMNIST" / "raw", where), (FASHION_SYSTEM_FOLDER, system)):
            if (count := mnist_count(raw)) is not None:
                return DataCheck(True, count, False, f"Fashion-MNIST found in {shown}: {count:,} training images")
        return DataCheck(False, None, True, f"Fashion-MNIST not found in {where} nor {FASHION_SYSTEM_FOLDER}; Start "
                                            f"downloads it there (about 30 MB, needs internet), or install "
                                            f"Debian's dataset-fashion-mnist")
    if dataset == "emoji64":
        if not (EMOJI_FONT.is_file() and EMOJI_TEST.is_file()):
            return DataCheck(False, None, False, "emoji64 is rendered from the Noto Color Emoji font: apt-get install "
                                                 "fonts-noto-color-emoji unicode-data")
        count = len(emoji_list()[0])
        return DataCheck(True, count - count // 5, False, f"emoji64: about {count - count // 5:,} training emoji "
                                                           f"rendered from {EMOJI_FONT.name} (cached after the first run)")
    folder = data_folder(dataset, data_root, data_path)
    shown = str(folder)
    if shown_root is not None:                          # name the folder only relative to the data root
        shown = f"{shown_root}/{folder.relative_to(data_root)}" if folder.is_relative_to(data_root) \
            else "the chosen folder"
    if dataset == "imagefolder" and not data_path:
        return DataCheck(False, None, False, "imagefolder needs a data path: a folder of images")
    count = count_images(folder) if folder.is_dir() else 0
    if count:
        return DataCheck(True, count, False, f"{count:,} images found in {shown}")
    return DataCheck(False, None, False, f"no images (.jpg, .png, ...) found in {shown}; put the images "
                                         f"there or choose another folder")


def ensure_data(config: TrainConfig) -> DataCheck:
    """The data a config names is there, downloading a missing built-in set first (MNIST); else a
    DataError with one line. Folders made for a download that fails are removed again."""
    check = check_data(config.dataset, config.data_root, config.data_path)
    if check.found:
        return check
    if not check.downloadable:
        raise DataError(check.message)
    folder, load = {"mnist": ("MNIST", load_mnist), "fashion": ("FashionMNIST", load_fashion)}[config.dataset]
    raw = data_folder(config.dataset, config.data_root, config.data_path) / folder / "raw"
    made = [p for p in (raw, *raw.parents) if not p.exists()]          # deepest first
    try:
        load(config)
    except DataError:
        for folder in made:                              # only the empty folders this attempt made
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return check_data(config.dataset, config.data_root, config.data_path)


# ---------------------------------------------------------------- MNIST
MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def load_mnist(config: TrainConfig, split: str = "train") -> ImageData:
    """MNIST from torchvision's raw layout (the IDX files, plain or any .gz), else downloaded by torchvision
    into data_root when a connection exists."""
    from torchvision.datasets import MNIST
    root = Path(config.data_path or config.data_root)
    train = split == "train"
    prefix = "train" if train else "t10k"
    found = [find_idx(root / "MNIST" / "raw", f"{prefix}-{kind}") for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")]
    if all(found):                                   # read directly: torchvision re-downloads a .gz whose MD5 differs
        return ImageData("mnist", read_idx(found[0])[:, None].contiguous(), read_idx(found[1]).long(), 10)
    try:
        dataset = MNIST(str(root), train=train, download=False)
    except RuntimeError:
        try:
            root.mkdir(parents=True, exist_ok=True)
            dataset = MNIST(str(root), train=train, download=True)
        except Exception as error:  # offline, read-only folder, ...
            raise DataError(
                f"MNIST is not in {root / 'MNIST' / 'raw'} and could not be downloaded "
                f"({download_failure(error)}). "
                f"Put the four files {', '.join(MNIST_FILES)} (or their .gz) in {root / 'MNIST' / 'raw'}, "
                f"or point the data root (--data-root) at the folder that holds MNIST/raw.") from None
    images = dataset.data[:, None].contiguous()                                  # (N, 1, 28, 28) uint8
    return ImageData("mnist", images, dataset.targets.long(), 10)


# ---------------------------------------------------------------- Fashion-MNIST
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")


def read_idx(path: Path) -> torch.Tensor:
    """An IDX file (MNIST's format: big-endian magic, dims, then uint8 data), plain or .gz."""
    import gzip
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as stream:
        data = stream.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path.name} is not an IDX file of unsigned bytes")
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    body = data[4 + 4 * dims:]
    if len(body) != math.prod(shape):
        raise DataError(f"{path.name} is truncated: {len(body)} bytes for a {shape} array")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(shape)


def find_idx(folder: Path, stem: str) -> Path | None:
    """`stem` or `stem.gz` in `folder`, whichever exists."""
    for path in (folder / stem, folder / f"{stem}.gz"):
        if path.is_file():
            return path
    return None


def load_fashion(config: TrainConfig, split: str = "train") -> ImageData:
    """Fashion-MNIST (Xiao et al. 2017, MIT): torchvision's layout under the data root (downloaded there
    when missing and a connection exists), or the Debian package's folder when it is installed."""
    root = Path(config.data_path or config.data_root)
    prefix = "train" if split == "train" else "t10k"
    stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    for folder in (root / "FashionMNIST" / "raw", FASHION_SYSTEM_FOLDER):
        found = [find_idx(folder, stem) for stem in stems]
        if all(found):
            images, labels = read_idx(found[0]), read_idx(found[1])
            return ImageData("fashion", images[:, None].contiguous(), labels.long(), 10)  # (N, 1, 28, 28)
    try:
        from torchvision.datasets import FashionMNIST
        root.mkdir(parents=True, exist_ok=True)
        dataset = FashionMNIST(str(root), train=split == "train", download=True)
    except Exception as error:  # offline, read-only folder, ...
        raise DataError(
            f"Fashion-MNIST is not in {root / 'FashionMNIST' / 'raw'} nor {FASHION_SYSTEM_FOLDER} and could not "
            f"be downloaded ({download_failure(error)}). On Debian/Ubuntu: apt-get install dataset-fashion-mnist; "
            f"or put the four idx files in {root / 'FashionMNIST' / 'raw'}.") from None
    return ImageData("fashion", dataset.data[:, None].contiguous(), dataset.targets.long(), 10)


# ---------------------------------------------------------------- emoji at 64x64 RGB
EMOJI_SIZE = 64
EMOJI_GLYPH_PX = 109                        # the one bitmap size of Noto Color Emoji (CBDT strikes)


def emoji_list(test_file: Path = EMOJI_TEST) -> tuple[list[str], list[int], list[str]]:
    """(emoji strings, group index of each, group names) from Unicode's emoji-test.txt: fully-qualified
    emoji without skin-tone modifiers or ZWJ sequences; the Component group (bare modifiers) is left out."""
    emoji, group_of, groups, group = [], [], [], None
    for line in test_file.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
            continue
        if line.startswith("#") or ";" not in line or group in (None, "Component"):
            continue
        codes, status = line.split(";", 1)
        if status.split("#")[0].strip() != "fully-qualified":
            continue
        points = [int(code, 16) for code in codes.split()]
        if 0x200D in points or any(0x1F3FB <= p <= 0x1F3FF for p in points):
            continue
        if group not in groups:
            groups.append(group)
        emoji.append("".join(map(chr, points)))
        group_of.append(groups.index(group))
    return emoji, group_of, groups


def render_emoji(text: str, font, size: int = EMOJI_SIZE) -> torch.Tensor | None:
    """One emoji drawn in colour, cropped to its ink, centred on white and resized: (3, size, size) uint8."""
    from PIL import Image, ImageDraw
    from torchvision.transforms.functional import pil_to_tensor
    canvas = Image.new("RGBA", (EMOJI_GLYPH_PX * 3 // 2, EMOJI_GLYPH_PX * 3 // 2), (255, 255, 255, 0))
    ImageDraw.Draw(canvas).text((0, 0), text, font=font, embedded_color=True)
    box = canvas.getbbox()
    if box is None:                                          # the font has no glyph for it
        return None
    glyph = canvas.crop(box)
    side = max(glyph.size)
    square = Image.new("RGB", (side, side), "white")
    square.paste(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2), mask=glyph.split()[3])
    return pil_to_tensor(square.resize((size, size), Image.LANCZOS))            # (3, size, size)


def renderer() -> str:
    """What draws the glyphs: Pillow and its FreeType differ in how they scale and smooth colour bitmaps."""
    import PIL
    from PIL import features
    return f"Pillow {PIL.__version__}, FreeType {features.version('freetype2')}"


def emoji_cache_name(emoji: list[str], font_bytes: int, drawn_by: str) -> str:
    """The cache file of one rendering: the emoji list, the font and the renderer are its key, so a cache
    drawn by another Pillow (other pixels) is rendered again rather than mixed with this one's models."""
    key = hashlib.sha1(("\n".join(emoji) + f"|{font_bytes}|{drawn_by}").encode()).hexdigest()[:12]
    return f"genlab-emoji64-{len(emoji)}-{key}.safetensors"


def load_emoji64(config: TrainConfig, split: str = "train") -> ImageData:
    """About 1,400 colour emoji rendered once at 64x64 from Noto Color Emoji (images Apache-2.0), labelled
    by their Unicode emoji group; every fifth emoji is the test split. Cached under data_root/cache."""
    from safetensors.torch import load_file, save_file
    if not (EMOJI_FONT.is_file() and EMOJI_TEST.is_file()):
        raise DataError(f"emoji64 is rendered from {EMOJI_FONT} with the groups of {EMOJI_TEST}; on Debian/Ubuntu: "
                        f"apt-get install fonts-noto-color-emoji unicode-data")
    emoji, group_of, groups = emoji_list()
    cache = Path(config.data_root) / "cache" / emoji_cache_name(emoji, EMOJI_FONT.stat().st_size, renderer())
    try:
        stored = load_file(str(cache))
        images, labels = stored["images"], stored["labels"]
    except Exception:  # noqa: BLE001  (missing or bad cache: render again)
        from PIL import ImageFont
        font = ImageFont.truetype(str(EMOJI_FONT), EMOJI_GLYPH_PX)
        drawn = [(render_emoji(text, font), group) for text, group in zip(emoji, group_of)]
        images = torch.stack([image for image, _ in drawn if image is not None])      # (N, 3, 64, 64)
        labels = torch.tensor([group for image, group in drawn if image is not None])
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        save_file({"images": images.contiguous(), "labels": labels}, str(tmp))
        os.replace(tmp, cache)
    test = torch.arange(len(images)) % 5 == 4
    keep = test if split == "test" else ~test
    return ImageData("emoji64", images[keep], labels[keep].long(), len(groups))


# ---------------------------------------------------------------- image folders (CelebA and others)
def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def decode_image(path: Path, size: int, channels: int) -> torch.Tensor:
    """Resize the short side to `size` and center-crop to size x size, as the DCGAN example does."""
    from PIL import Image
    from torchvision.transforms.functional import center_crop, pil_to_tensor, resize
    with Image.open(path) as image:
        image = image.convert("RGB" if channels == 3 else "L")
        tensor = pil_to_tensor(image)                                           # (C, h, w) uint8
    return center_crop(resize(tensor, size, antialias=True), [size, size])       # (C, size, size)


def download_failure(error: Exception) -> str:
    """Why a download failed, without an OS error's text (which would tell whether other paths exist)."""
    if isinstance(error, OSError) and not isinstance(error, (ConnectionError, TimeoutError)):
        return "no connection, or the folder cannot be written"
    return " ".join(str(error).split())[:300]


def cache_file(folder: Path, files: list[Path], size: int, channels: int, data_root: Path) -> Path:
    """Where the decoded uint8 tensor of an image folder is kept: data_root/cache, never beside the data
    (keyed by the folder's absolute path and its file list)."""
    listing = "\n".join(f"{p.relative_to(folder)}:{p.stat().st_size}" for p in files)
    key = hashlib.sha1(f"{folder.resolve()}\n{listing}".encode())
    name = f"genlab-cache-{size}px-{channels}ch-{len(files)}-{key.hexdigest()[:12]}.safetensors"
    return data_root / "cache" / name


def load_image_folder(folder: Path, size: int, channels: int, data_root: Path, name: str,
                      limit: int | None = None) -> ImageData:
    """Every image under `folder`, decoded once into a cached uint8 tensor (safetensors)."""
    from safetensors.torch import load_file, save_file
    files = list_images(folder)[:limit] if folder.is_dir() else []
    if not files:                                     # one message whether or not the folder exists
        raise DataError(f"no images (.jpg, .png, ...) found under {folder}; point --data-path at a folder "
                        f"of images, e.g. an img_align_celeba folder")
    cache = cache_file(folder, files, size, channels, data_root)
    if cache.exists():
        try:
            images = load_file(str(cache))["images"]
            return ImageData(name, images, torch.zeros(len(images), dtype=torch.long), 1)
        except Exception:
            cache.unlink(missing_ok=True)                                           # rebuild a bad cache
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        images = torch.stack(list(pool.map(lambda p: decode_image(p, size, channels), files)))
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")                  # one per process
    save_file({"images": images.contiguous()}, str(tmp))
    os.replace(tmp, cache)
    return ImageData(name, images, torch.zeros(len(images), dtype=torch.long), 1)


def load_imagefolder(config: TrainConfig, split: str = "train") -> ImageData:
    if not config.data_path:
        raise DataError("the imagefolder data set needs --data-path, a folder of images")
    return load_image_folder(Path(config.data_path), config.image_size or 64, 3, Path(config.data_root),
                             "imagefolder", config.max_images)


def load_celeba64(config: TrainConfig, split: str = "train") -> ImageData:
    """CelebA at 64x64: a folder of aligned faces (data_path, or data_root/celeba/img_align_celeba)."""
    root = Path(config.data_root)
    folder = Path(config.data_path) if config.data_path else root / "celeba" / "img_align_celeba"
    if not folder.is_dir():
        try:
            from torchvision.datasets import CelebA
            CelebA(str(root), split="train", download=True)
        except Exception as error:
            raise DataError(
                f"CelebA is not in {folder} and could not be downloaded ({download_failure(error)}). Put the aligned "
                f"faces (000001.jpg ...) in {folder}, as torchvision's CelebA layout "
                f"{root}/celeba/img_align_celeba/ expects, or pass --data-path to any folder of face "
                f"images.") from None
    return load_image_folder(folder, 64, 3, root, "celeba64", config.max_images)


# ---------------------------------------------------------------- synthetic
def load_synthetic(config: TrainConfig, split: str = "train", count: int = 2048) -> ImageData:
    """10 classes of soft blobs placed on a circle by class, made in code for smoke tests."""
    size, channels = config.image_size or 28, config.channels
    generator = torch.Generator().manual_seed(1234 if split == "train" else 4321)
    labels = torch.randint(10, (count,), generator=generator)                     # (N,)
    angle = labels.float() * (2 * math.pi / 10) + 0.2 * torch.randn(count, generator=generator)
    radius = size * (0.28 + 0.04 * torch.randn(count, generator=generator))
    cx, cy = size / 2 + radius * torch.cos(angle), size / 2 + radius * torch.sin(angle)
    width = size * (0.10 + 0.02 * torch.rand(count, generator=generator))
    grid = torch.arange(size).float()
    dy = (grid[None, :, None] - cy[:, None, None]) ** 2                           # (N, H, 1)
    dx = (grid[None, None, :] - cx[:, None, None]) ** 2                           # (N, 1, W)
    blob = torch.exp(-(dx + dy) / (2 * width[:, None, None] ** 2))                # (N, H, W)
    if channels == 3:
        hue = labels.float() / 10 * 2 * math.pi
        colour = torch.stack([torch.cos(hue + k * 2 * math.pi / 3) * 0.5 + 0.5 for k in range(3)], 1)
        images = blob[:, None] * colour[:, :, None, None]                        # (N, 3, H, W)
    else:
        images = blob[:, None]                                                    # (N, 1, H, W)
    return ImageData("synthetic", (images * 255).round().to(torch.uint8), labels, 10)
