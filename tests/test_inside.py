"""Looking inside a network (`jaxdl.tools.features`, `jaxdl.tools.attribution`), held to what
each method computes on small networks whose answers are known by hand."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl.errors import ConfigError
from jaxdl.nn import Conv
from jaxdl.plots.inside import crop
from jaxdl.state import create_train_state
from jaxdl.tools import attribution, features


class Quadrant(nn.Module):
    """Class 0's logit is the sum of the top-left 4x4 pixels, class 1's is zero: only those
    pixels matter, and each by exactly 1."""

    num_classes: int = 2

    @nn.compact
    def __call__(self, x, train=False):
        scale = self.param("scale", nn.initializers.ones, ())  # 1: a state needs parameters
        score = scale * x[:, :4, :4, :].sum(axis=(1, 2, 3))
        return jnp.stack([score, jnp.zeros_like(score)], -1)


class ConvNet(nn.Module):
    """conv 3x3 -> ReLU (its output is the top-level layer "Features") -> conv 3x3 stride 2
    -> global mean -> dense: Grad-CAM and receptive fields have closed forms here."""

    num_classes: int = 3

    @nn.compact
    def __call__(self, x, train=False):
        x = Features(name="Features")(x)
        x = nn.relu(Conv(6, 3, 2, layers="plain", name="Down")(x))
        return nn.Dense(self.num_classes, name="Head")(x.mean(axis=(1, 2)))


class Features(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.relu(Conv(4, 3, layers="plain")(x))


class Linear(nn.Module):
    """Logits linear in the pixels: a class's log-probability grows along a fixed direction."""

    num_classes: int = 3

    @nn.compact
    def __call__(self, x, train=False):
        dense = nn.Dense(self.num_classes, kernel_init=nn.initializers.normal(0.1))
        return dense(x.reshape(x.shape[0], -1))


def state_of(model, shape, seed=0):
    return create_train_state(model, optax.sgd(0.1), jax.random.PRNGKey(seed), (1, *shape))


def test_feature_layers_in_call_order_and_probe_gradient():
    state = state_of(ConvNet(), (8, 8, 1))
    image = jax.random.normal(jax.random.key(1), (2, 8, 8, 1))
    assert features.feature_layers(state, image) == [("Features", (8, 8, 4)), ("Down", (4, 4, 6))]
    assert features.last_feature_layer(state, image) == "Down"
    logits, out = features.probed_apply(state, image, "Features")
    np.testing.assert_allclose(logits, state.apply_fn({"params": state.params}, image), atol=1e-6)
    assert out.shape == (2, 8, 8, 4) and float(out.min()) >= 0  # after its ReLU
    # a probe delta reaches the rest of the network as an added activation
    delta = jnp.zeros_like(out).at[0, 3, 3, 1].set(0.5)
    moved, _ = features.probed_apply(state, image, "Features", delta)
    assert not np.allclose(moved[0], logits[0]) and np.allclose(moved[1], logits[1])
    with pytest.raises(ConfigError, match="no top-level layer 'Nope'.*Features, Down"):
        features.probed_apply(state, image, "Nope")


def test_receptive_field_measured_from_the_gradient():
    state = state_of(ConvNet(), (16, 16, 1))
    image = jnp.zeros((1, 16, 16, 1))
    # one 3x3 conv: 3 pixels centred on the unit; then a 3x3 stride-2 conv: 3 + 2 = 5, stride 2
    assert features.receptive_field(state, image, "Features") == features.ReceptiveField(3, 1, -1)
    # unit (y, x) of "Down" reads rows 2y - 1 .. 2y + 1 of "Features", so pixels 2y - 2 .. 2y + 2
    field = features.receptive_field(state, image, "Down")
    assert field == features.ReceptiveField(5, 2, -2)
    # its crop: a 5x5 window with grey where it leaves the image
    pixels = np.arange(16 * 16, dtype=np.uint8).reshape(16, 16, 1)
    corner = crop(pixels, 0, 0, field)
    assert corner.shape == (5, 5, 1)
    assert (corner[:2] == 128).all() and (corner[:, :2] == 128).all()
    np.testing.assert_array_equal(corner[2:, 2:, 0], pixels[:3, :3, 0])


def test_top_activations_find_the_planted_images():
    state = state_of(ConvNet(), (8, 8, 1))
    images = 0.01 * jax.random.normal(jax.random.key(2), (20, 8, 8, 1))
    _, reference = features.probed_apply(state, images, "Features")
    found = features.top_activations(state, images, "Features", [0, 3], count=4, batch_size=7)
    for channel in (0, 3):
        peaks = np.asarray(reference[..., channel]).reshape(20, -1)
        expected = np.argsort(-peaks.max(1), kind="stable")[:4]
        assert [i for i, *_ in found[channel]] == expected.tolist()
        index, y, x, value = found[channel][0]
        assert value == pytest.approx(float(reference[index, y, x, channel]), rel=1e-6)
    # units that read the zero padding are left out when the field is given
    field = features.ReceptiveField(3, 1, -1)
    inside = features.inside_units(field, 8, 8)
    assert inside.tolist() == [False, True, True, True, True, True, True, False]
    kept = features.top_activations(state, images, "Features", [0, 3], count=20, field=field)
    for places in kept.values():
        assert all(1 <= y <= 6 and 1 <= x <= 6 for _, y, x, _ in places)
    for channel in (0, 3):
        interior = np.asarray(reference[:, 1:7, 1:7, channel]).reshape(20, -1).max(1)
        assert kept[channel][0][3] == pytest.approx(float(interior.max()), rel=1e-6)
    with pytest.raises(ConfigError, match="has 4 channels, got channel 4"):
        features.top_activations(state, images, "Features", [4])


def test_gradient_saliency_and_smoothgrad_on_a_linear_score():
    state = state_of(Quadrant(), (8, 8, 3))
    images = jax.random.normal(jax.random.key(3), (2, 8, 8, 3))
    labels = jnp.array([0, 1])
    raw = np.asarray(attribution.gradient_saliency(state, images, labels))
    expected = np.zeros((8, 8))
    expected[:4, :4] = 1
    np.testing.assert_array_equal(raw[0], expected)
    np.testing.assert_array_equal(raw[1], 0)  # class 1's score depends on nothing
    # the gradient of a linear score is the same everywhere: SmoothGrad equals it
    smooth = attribution.smoothgrad(state, images, labels, jax.random.key(4), samples=5)
    np.testing.assert_allclose(smooth, raw, atol=1e-6)


def test_smoothgrad_averages_gradients_at_noisy_copies():
    state = state_of(ConvNet(), (8, 8, 1))
    images = jax.random.normal(jax.random.key(5), (2, 8, 8, 1))
    labels = jnp.array([1, 2])
    key = jax.random.key(6)
    smooth = attribution.smoothgrad(state, images, labels, key, samples=3, noise=0.2)
    spread = 0.2 * (images.max(axis=(1, 2, 3)) - images.min(axis=(1, 2, 3)))
    by_hand = np.mean(
        [
            attribution.gradient_saliency(
                state,
                images
                + spread[:, None, None, None]
                * jax.random.normal(jax.random.fold_in(key, i), images.shape),
                labels,
            )
            for i in range(3)
        ],
        axis=0,
    )
    np.testing.assert_allclose(smooth, by_hand, rtol=1e-5, atol=1e-7)
    noiseless = attribution.smoothgrad(state, images, labels, key, samples=2, noise=0.0)
    raw = attribution.gradient_saliency(state, images, labels)
    np.testing.assert_allclose(noiseless, raw, atol=1e-5 * float(raw.max()))


def test_grad_cam_equals_its_formula():
    state = state_of(ConvNet(), (8, 8, 1), seed=3)
    images = jax.random.normal(jax.random.key(7), (3, 8, 8, 1))
    labels = jnp.array([0, 1, 2])
    cam = np.asarray(attribution.grad_cam(state, images, labels, "Features"))
    _, activation = features.probed_apply(state, images, "Features")

    def score(a, i):  # the network above "Features", for image i's true class
        params = state.params
        x = nn.relu(Conv(6, 3, 2, layers="plain").apply({"params": params["Down"]}, a))
        logits = nn.Dense(3).apply({"params": params["Head"]}, x.mean(axis=(1, 2)))
        return logits[0, labels[i]]

    for i in range(3):
        grads = jax.grad(score)(activation[i : i + 1], i)[0]
        weighted = np.maximum((grads.mean(axis=(0, 1)) * activation[i]).sum(-1), 0)
        expected = weighted / (weighted.max() + 1e-12)  # same size: the resize is the identity
        np.testing.assert_allclose(cam[i], expected, rtol=1e-5, atol=1e-6)
    assert cam.max() == pytest.approx(1.0, abs=1e-6) and cam.min() >= 0


def test_occlusion_and_deletion_on_a_known_region():
    state = state_of(Quadrant(), (8, 8, 1))
    images = jnp.full((2, 8, 8, 1), 0.5)
    labels = jnp.array([0, 0])
    heat = attribution.occlusion(state, images, labels, patch=2, stride=2)
    assert heat.shape == (2, 8, 8)
    assert (heat[:, :4, :4] > 0).all() and np.allclose(heat[:, 4:, :], 0)
    assert np.allclose(heat[:, :, 4:], 0)
    # deleting the 16 pixels the map ranks first removes the whole score: p(class 0) -> 1/2
    maps = np.zeros((2, 8, 8), np.float32)
    maps[:, :4, :4] = 1
    result = attribution.deletion_test(state, images, labels, maps, fraction=0.25)
    assert result["original"] == pytest.approx(float(jax.nn.sigmoid(8.0)), rel=1e-6)
    assert result["top_deleted"] == pytest.approx(0.5, abs=1e-6)
    assert result["top_deleted"] < result["random_deleted"] < result["original"]
    with pytest.raises(ValueError, match="patch 9 is larger"):
        attribution.occlusion(state, images, labels, patch=9)


def test_class_visualisation_raises_its_class_within_the_pixel_range():
    state = state_of(Linear(), (8, 8, 1), seed=1)
    low, high = features.pixel_range((0.5,), (0.25,))
    assert float(low[0]) == pytest.approx(-2.0) and float(high[0]) == pytest.approx(2.0)
    classes = jnp.arange(3)
    made, probabilities = features.class_visualisations(
        state, classes, (8, 8, 1), low, high, jax.random.key(0), steps=64
    )
    assert made.shape == (3, 8, 8, 1)
    assert float(made.min()) >= -2.0 - 1e-6 and float(made.max()) <= 2.0 + 1e-6
    own = np.asarray(probabilities)[np.arange(3), np.arange(3)]
    # from 1/3 at the blank start; jitter and blur hold it back on these white-noise weights
    # (a rolled or blurred slope no longer points uphill); without them it climbs all the way
    assert (own > 0.4).all(), own
    sharp, sharp_probabilities = features.class_visualisations(
        state,
        classes,
        (8, 8, 1),
        low,
        high,
        jax.random.key(0),
        steps=64,
        jitter=0,
        blur_every=1000,
    )
    own_sharp = np.asarray(sharp_probabilities)[np.arange(3), np.arange(3)]
    assert (own_sharp > 0.99).all(), own_sharp
    # the image grows along its class's weights less the others' (the log-probability's slope)
    kernel = np.asarray(state.params["Dense_0"]["kernel"]).reshape(8, 8, 3)
    for k in range(3):
        slope = kernel[..., k] - kernel[..., [j for j in range(3) if j != k]].mean(-1)
        assert np.corrcoef(np.asarray(sharp[k, ..., 0]).ravel(), slope.ravel())[0, 1] > 0.5
    pixels = features.to_pixels(made, (0.5,), (0.25,))
    assert pixels.dtype == np.uint8
    np.testing.assert_allclose((pixels / 255 - 0.5) / 0.25, np.asarray(made), atol=1 / 255 / 0.25)


def test_gaussian_blur_keeps_a_constant_interior_and_the_total():
    image = jnp.zeros((1, 15, 15, 2)).at[0, 7, 7, 0].set(1.0)
    blurred = features.gaussian_blur(image, 1.0)
    assert float(blurred.sum()) == pytest.approx(1.0, rel=1e-6)
    assert float(blurred[0, 7, 7, 0]) == blurred[0, ..., 0].max() < 1.0
    assert float(jnp.abs(blurred[..., 1]).max()) == 0.0  # channels stay apart
    flat = features.gaussian_blur(jnp.ones((1, 9, 9, 1)), 0.5)
    assert float(flat[0, 4, 4, 0]) == pytest.approx(1.0, rel=1e-6)


@pytest.mark.slow
def test_looking_inside_experiment_end_to_end(tmp_path, data_dir):
    from experiments import looking_inside

    tiny = ["--train_limit", "300", "--test_limit", "120", "--epochs", "1", "--batch_size", "50"]
    results = looking_inside.main(
        [*tiny, "--deletion_images", "20", "--workdir", str(tmp_path), "--data_dir", data_dir]
    )
    assert results["run_dir"].endswith("seed_0") and results["second_run_dir"].endswith("seed_1")
    assert len(results["class_visualisation_probability"]) == 10
    assert len(results["second_network_probability"]) == 10
    assert 0 <= results["second_network_correct"] <= 1
    assert results["top_patch_layer"].startswith(("ConvBN", "BasicBlock"))
    assert results["grad_cam_layer"] == "BasicBlock_8"  # ResNet-20's last 8x8 block
    assert results["deletion_images"] == 20
    for ranking in ("SmoothGrad", "gradient"):
        figures = results["deletion"][ranking]
        assert set(figures) == {"original", "top_deleted", "random_deleted"}
    for name in ("class_visualisations.png", "top_patches.png", "attribution.png"):
        assert (tmp_path / "plots" / name).stat().st_size > 10_000
    # the trained runs are reused, not trained again, by a second call on another network
    again = looking_inside.main(
        [
            *tiny,
            "--deletion_images",
            "20",
            "--workdir",
            str(tmp_path / "again"),
            "--run_dir",
            results["second_run_dir"],
            "--second_run_dir",
            results["run_dir"],
            "--patch_layer",
            "BasicBlock_4",
            "--channels",
            "3,20",
            "--data_dir",
            data_dir,
        ]
    )
    assert again["run_dir"] == results["second_run_dir"]
    assert again["top_patch_layer"] == "BasicBlock_4" and again["top_patch_field"] > 15
    assert not (tmp_path / "again" / "seed_0").exists()
