"""The offline data sets: Fashion-MNIST (Debian's dataset-fashion-mnist or torchvision's layout) and emoji64
(rendered from Debian's fonts-noto-color-emoji, grouped by Unicode's emoji-test.txt)."""
import gzip

import pytest
import torch

from genlab import DataError, TrainConfig
from genlab import data as D
from genlab.data import load_dataset

fashion_installed = pytest.mark.skipif(not D.FASHION_SYSTEM_FOLDER.is_dir(),
                                       reason="apt-get install dataset-fashion-mnist")
emoji_installed = pytest.mark.skipif(not (D.EMOJI_FONT.is_file() and D.EMOJI_TEST.is_file()),
                                     reason="apt-get install fonts-noto-color-emoji unicode-data")


def write_idx(path, array: torch.Tensor, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.dim()]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    body = header + array.contiguous().numpy().tobytes()
    path.write_bytes(gzip.compress(body) if compress else body)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_files_read_back_exactly(tmp_path, compress):
    array = torch.randint(0, 256, (5, 7, 3), dtype=torch.uint8)
    path = tmp_path / ("a.gz" if compress else "a")
    write_idx(path, array, compress)
    assert torch.equal(D.read_idx(path), array)
    path.write_bytes(path.read_bytes()[:-3] if not compress else gzip.compress(b"\0\0\x08\x01\0\0\0\x09abc"))
    with pytest.raises(DataError, match="truncated"):
        D.read_idx(path)


def test_fashion_in_torchvision_layout_under_the_data_root(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    images, labels = torch.randint(0, 256, (6, 28, 28), dtype=torch.uint8), torch.arange(6, dtype=torch.uint8)
    write_idx(raw / "t10k-images-idx3-ubyte.gz", images, True)
    write_idx(raw / "t10k-labels-idx1-ubyte", labels, False)
    data = load_dataset(TrainConfig(dataset="fashion", data_root=str(tmp_path)), "test")
    assert data.images.shape == (6, 1, 28, 28) and torch.equal(data.images[:, 0], images)
    assert data.labels.tolist() == list(range(6)) and data.num_classes == 10


def test_mnist_raw_files_gzipped_by_hand_load_offline(tmp_path):
    """IDX files re-compressed with another gzip header (so torchvision's MD5 check fails) load as they are."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images, labels = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8), torch.tensor([3, 1, 4, 1], dtype=torch.uint8)
    write_idx(raw / "t10k-images-idx3-ubyte.gz", images, True)
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", labels, True)
    data = load_dataset(TrainConfig(dataset="mnist", data_root=str(tmp_path)), "test")
    assert torch.equal(data.images[:, 0], images) and data.labels.tolist() == [3, 1, 4, 1]
    assert data.images.shape == (4, 1, 28, 28) and data.num_classes == 10


@fashion_installed
def test_fashion_from_the_debian_package():
    train = load_dataset(TrainConfig(dataset="fashion", data_root="/nonexistent-genlab-root"))
    test = load_dataset(TrainConfig(dataset="fashion", data_root="/nonexistent-genlab-root"), "test")
    assert train.images.shape == (60000, 1, 28, 28) and len(test) == 10000
    assert train.labels.bincount().tolist() == [6000] * 10


@emoji_installed
def test_emoji_groups_are_the_unicode_groups_without_modifiers():
    emoji, group_of, groups = D.emoji_list()
    assert "Component" not in groups and len(groups) == 9 and "Smileys & Emotion" == groups[0]
    assert len(emoji) > 1200 and len(emoji) == len(group_of)
    assert "\U0001F600" in emoji and not any("\u200d" in e for e in emoji)            # grinning face, no ZWJ
    assert not any(0x1F3FB <= ord(c) <= 0x1F3FF for e in emoji for c in e)            # no skin tones
    assert groups[group_of[emoji.index("\U0001F34E")]] == "Food & Drink"             # red apple


@emoji_installed
def test_emoji64_renders_in_colour_splits_and_caches(tmp_path):
    config = TrainConfig(dataset="emoji64", data_root=str(tmp_path))
    train, test = load_dataset(config), load_dataset(config, "test")
    assert train.images.shape[1:] == (3, 64, 64) and train.images.dtype == torch.uint8
    assert len(train) > 1000 and 200 < len(test) < len(train) and train.num_classes == 9
    assert set(train.labels.tolist()) == set(range(9))
    pixels = train.images.float()
    assert (pixels[:, 0] - pixels[:, 2]).abs().mean() > 10                  # colour, not grey
    assert (pixels[:, :, 0, 0] == 255).all(1).float().mean() > 0.8          # mostly white background corners
    caches = list((tmp_path / "cache").glob("genlab-emoji64-*.safetensors"))
    assert len(caches) == 1
    again = load_dataset(config)                                             # from the cache
    assert torch.equal(again.images, train.images) and torch.equal(again.labels, train.labels)


def test_emoji_cache_is_keyed_by_font_and_renderer():
    name = D.emoji_cache_name(["\U0001F600", "\U0001F436"], 1000, "Pillow 12.3.0, FreeType 2.14.3")
    assert name.startswith("genlab-emoji64-2-") and name.endswith(".safetensors")
    assert D.emoji_cache_name(["\U0001F600", "\U0001F436"], 1000, "Pillow 11.0.0, FreeType 2.13.2") != name
    assert D.emoji_cache_name(["\U0001F600", "\U0001F436"], 1001, "Pillow 12.3.0, FreeType 2.14.3") != name
    assert "Pillow" in D.renderer() and "FreeType" in D.renderer()


def test_missing_emoji_font_is_one_actionable_line(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "EMOJI_FONT", tmp_path / "missing.ttf")
    with pytest.raises(DataError, match="apt-get install fonts-noto-color-emoji"):
        load_dataset(TrainConfig(dataset="emoji64", data_root=str(tmp_path)))


@fashion_installed
@emoji_installed
def test_the_train_page_check_finds_both_offline_sets_without_naming_paths_in_public(tmp_path):
    fashion = D.check_data("fashion", tmp_path, shown_root="DATA")
    assert fashion.found and fashion.images == 60000 and "/usr/share" not in fashion.message
    emoji = D.check_data("emoji64", tmp_path)
    assert emoji.found and 1000 < emoji.images < 1700


def test_missing_offline_sets_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "FASHION_SYSTEM_FOLDER", tmp_path / "none")
    monkeypatch.setattr(D, "EMOJI_FONT", tmp_path / "none.ttf")
    fashion = D.check_data("fashion", tmp_path)
    assert not fashion.found and fashion.downloadable and "dataset-fashion-mnist" in fashion.message
    emoji = D.check_data("emoji64", tmp_path)
    assert not emoji.found and not emoji.downloadable and "fonts-noto-color-emoji" in emoji.message
