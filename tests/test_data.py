"""Data sets: MNIST from the shared folder, image folders (the CelebA path), synthetic, errors."""
import pytest
import torch
from PIL import Image

from genlab import DataError, TrainConfig
from genlab.data import load_dataset


def test_mnist_loads_as_one_uint8_tensor(mnist_data_root):
    data = load_dataset(TrainConfig(dataset="mnist", data_root=str(mnist_data_root)))
    assert data.images.shape == (60000, 1, 28, 28) and data.images.dtype == torch.uint8
    assert data.num_classes == 10 and data.labels.unique().tolist() == list(range(10))
    test = load_dataset(TrainConfig(dataset="mnist", data_root=str(mnist_data_root)), split="test")
    assert len(test) == 10000


def test_batches_are_normalized_on_the_device():
    data = load_dataset(TrainConfig(dataset="synthetic", channels=3, image_size=32))
    x, y = data.batcher(16, torch.Generator().manual_seed(0))()
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1 and y.shape == (16,)


def make_faces(folder, count=12, size=(90, 110)):
    folder.mkdir(parents=True)
    gen = torch.Generator().manual_seed(0)
    for i in range(count):
        pixels = (torch.rand(size[1], size[0], 3, generator=gen) * 255).byte().numpy()
        Image.fromarray(pixels).save(folder / f"{i + 1:06d}.jpg")


def test_celeba_folder_is_cropped_to_64_and_cached(tmp_path):
    folder = tmp_path / "data" / "celeba" / "img_align_celeba"
    make_faces(folder)
    config = TrainConfig(dataset="celeba64", data_root=str(tmp_path / "data"))
    data = load_dataset(config)
    assert data.images.shape == (12, 3, 64, 64) and data.images.dtype == torch.uint8
    caches = list((tmp_path / "data" / "cache").glob("genlab-cache-64px-3ch-12-*.safetensors"))
    assert len(caches) == 1
    assert sorted(p.name for p in folder.iterdir()) == [f"{i + 1:06d}.jpg" for i in range(12)]   # nothing written there
    (folder / "000001.jpg").unlink()                     # the cache is keyed by the file list
    assert len(load_dataset(config)) == 11
    again = load_dataset(TrainConfig(dataset="celeba64", data_path=str(folder), data_root=str(tmp_path / "data")))
    assert torch.equal(again.images, load_dataset(config).images)


def test_imagefolder_respects_image_size_and_max_images(tmp_path):
    make_faces(tmp_path / "faces", count=5)
    data = load_dataset(TrainConfig(dataset="imagefolder", data_path=str(tmp_path / "faces"),
                                    image_size=32, max_images=3))
    assert data.images.shape == (3, 3, 32, 32)


def test_missing_data_gives_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="MNIST is not in .*MNIST/raw.*Put the four files"):
        load_dataset(TrainConfig(dataset="mnist", data_root=str(tmp_path)))
    with pytest.raises(DataError, match="CelebA is not in .*img_align_celeba"):
        load_dataset(TrainConfig(dataset="celeba64", data_root=str(tmp_path)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images") as empty:
        load_dataset(TrainConfig(dataset="imagefolder", data_path=str(tmp_path / "empty")))
    with pytest.raises(DataError, match="no images") as missing:                     # the same words:
        load_dataset(TrainConfig(dataset="imagefolder", data_path=str(tmp_path / "nowhere")))   # existence untold
    assert str(empty.value).replace("empty", "X") == str(missing.value).replace("nowhere", "X")
    with pytest.raises(DataError, match="needs --data-path"):
        load_dataset(TrainConfig(dataset="imagefolder"))


def test_synthetic_is_deterministic_and_labelled():
    a = load_dataset(TrainConfig(dataset="synthetic"))
    b = load_dataset(TrainConfig(dataset="synthetic"))
    assert torch.equal(a.images, b.images) and a.images.shape == (2048, 1, 28, 28)
    assert a.labels.unique().numel() == 10


def test_imagefolder_cache_goes_under_data_root_not_into_the_folder(tmp_path):
    make_faces(tmp_path / "faces", count=3)
    load_dataset(TrainConfig(dataset="imagefolder", data_path=str(tmp_path / "faces"), image_size=16,
                             data_root=str(tmp_path / "data")))
    assert sorted(p.name for p in (tmp_path / "faces").iterdir()) == ["000001.jpg", "000002.jpg", "000003.jpg"]
    assert len(list((tmp_path / "data" / "cache").glob("genlab-cache-16px-3ch-3-*.safetensors"))) == 1


def test_public_servers_load_only_builtin_data_under_their_data_root(tmp_path):
    import dataclasses
    from genlab.settings import PublicLimits, Settings
    settings = dataclasses.replace(Settings(data_root=tmp_path / "data"), public=True,
                                   limits=PublicLimits.public_defaults())
    make_faces(tmp_path / "faces", count=3)
    refused = [TrainConfig(dataset="imagefolder", data_path=str(tmp_path / "faces"), data_root=str(tmp_path / "data")),
               TrainConfig(dataset="celeba64", data_path=str(tmp_path / "faces"), data_root=str(tmp_path / "data")),
               TrainConfig(dataset="mnist", data_root="/etc"),
               TrainConfig(dataset="synthetic", data_root=str(tmp_path / "elsewhere"))]
    for config in refused:
        with pytest.raises(DataError, match="only on its built-in data sets") as error:
            load_dataset(config, settings=settings)
        assert "/etc" not in str(error.value) and "faces" not in str(error.value)
    assert not (tmp_path / "elsewhere").exists()
    data = load_dataset(TrainConfig(dataset="synthetic", data_root=str(tmp_path / "data")), settings=settings)
    assert len(data) == 2048
