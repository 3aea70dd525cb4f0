"""Data: TFDS loading without TensorFlow, stable splits, on-device batches, clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl import data
from jaxdl.errors import ConfigError


@pytest.fixture(scope="module")
def mnist_small(data_dir):
    return data.load("mnist", "train", data_dir, limit=600)


def test_load_real_mnist(mnist_small):
    assert mnist_small.images.shape == (600, 28, 28, 1)
    assert mnist_small.images.dtype == np.uint8
    assert mnist_small.labels.dtype == np.int32
    assert mnist_small.class_names == tuple(str(i) for i in range(10))
    assert set(np.unique(mnist_small.labels)) == set(range(10))
    assert 20 < mnist_small.images.mean() < 50  # mostly black digits: mean pixel ~33


def test_load_real_cifar10_names(data_dir):
    cifar = data.load("cifar10", "test", data_dir, limit=50)
    assert cifar.images.shape == (50, 32, 32, 3)
    assert cifar.class_names[:3] == ("airplane", "automobile", "bird")


def test_split_is_seeded_stable_and_disjoint(mnist_small):
    train, val = data.train_val_split(mnist_small, 100, seed=3)
    train2, val2 = data.train_val_split(mnist_small, 100, seed=3)
    _, val_other = data.train_val_split(mnist_small, 100, seed=4)
    assert len(train) == 500 and len(val) == 100
    np.testing.assert_array_equal(val.images, val2.images)
    np.testing.assert_array_equal(train.labels, train2.labels)
    assert not np.array_equal(val.images, val_other.images)
    # disjoint and complete: the pixel sums of both parts add up to the whole
    total = mnist_small.images.astype(np.int64).sum()
    assert train.images.astype(np.int64).sum() + val.images.astype(np.int64).sum() == total


@pytest.mark.parametrize("batch_size", [1, 7, 128, 600, 1000])
def test_evaluation_counts_every_example_once(mnist_small, batch_size):
    device_data = data.to_device(mnist_small)
    pre = data.Preprocess((0.0,), (1.0,))
    label_sum, count = 0.0, 0.0
    for batch in data.eval_batches(device_data, batch_size, pre):
        assert batch["image"].shape[0] == batch_size
        label_sum += float(jnp.sum(batch["label"] * batch["mask"]))
        count += float(jnp.sum(batch["mask"]))
    assert count == 600
    assert label_sum == float(mnist_small.labels.sum())


def test_train_batches_cover_a_permutation(mnist_small):
    device_data = data.to_device(mnist_small)
    pre = data.Preprocess((0.0,), (1.0,))
    batches = list(data.train_batches(device_data, jax.random.PRNGKey(0), 64, pre))
    assert len(batches) == data.steps_per_epoch(600, 64) == 9
    labels = np.concatenate([np.asarray(b["label"]) for b in batches])
    assert len(labels) == 576
    again = list(data.train_batches(device_data, jax.random.PRNGKey(0), 64, pre))
    np.testing.assert_array_equal(batches[3]["image"], again[3]["image"])
    other = list(data.train_batches(device_data, jax.random.PRNGKey(1), 64, pre))
    assert not np.array_equal(batches[0]["label"], other[0]["label"])
    resumed = list(data.train_batches(device_data, jax.random.PRNGKey(0), 64, pre, start=5))
    np.testing.assert_array_equal(resumed[0]["image"], batches[5]["image"])


def test_normalize_uses_channel_stats(mnist_small):
    mean, std = data.channel_stats(mnist_small.images)
    x = data.normalize(jnp.asarray(mnist_small.images), mean, std)
    np.testing.assert_allclose(float(x.mean()), 0.0, atol=1e-4)
    np.testing.assert_allclose(float(x.std()), 1.0, atol=1e-4)


def test_random_crop_is_a_shift_and_flip_a_mirror():
    image = jnp.arange(2 * 6 * 6 * 1, dtype=jnp.float32).reshape(2, 6, 6, 1) + 1
    cropped = data.random_crop(jax.random.PRNGKey(0), image, 2)
    assert cropped.shape == image.shape
    for i in range(2):  # every non-zero crop pixel is a pixel of the original image
        values = set(np.asarray(cropped[i]).ravel()) - {0.0}
        assert values <= set(np.asarray(image[i]).ravel())
    flipped = data.random_flip(jax.random.PRNGKey(0), jnp.tile(image[:1], (64, 1, 1, 1)))
    mirrored = np.asarray(flipped[:, :, ::-1] == image[:1]).all(axis=(1, 2, 3))
    same = np.asarray(flipped == image[:1]).all(axis=(1, 2, 3))
    assert np.all(mirrored | same) and 10 < mirrored.sum() < 54


def test_unknown_dataset_is_one_sentence(data_dir):
    with pytest.raises(ConfigError, match="unknown dataset 'nosuch'.*cifar10, mnist"):
        data.load("nosuch", "train", data_dir)


def test_missing_prepared_data_says_how_to_fix(tmp_path):
    with pytest.raises(ConfigError, match="no prepared 'mnist' data under .*TFDS_DATA_DIR"):
        data.load("mnist", "train", str(tmp_path), download=False)


def test_batch_larger_than_the_split():
    with pytest.raises(ConfigError, match="batch size 700 is larger than the 600"):
        data.steps_per_epoch(600, 700)
