"""The model zoo: parameter counts equal to the papers / torchvision, every model trains a step."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl import models
from jaxdl.errors import ConfigError
from jaxdl.models.googlenet import STAGES
from jaxdl.state import TrainState, create_train_state
from jaxdl.step import train_step
from jaxdl.tools import cost

IMAGENET = (1, 224, 224, 3)
CIFAR = (1, 32, 32, 3)

PAPER_COUNTS = {
    "lenet5": ((1, 32, 32, 1), 10, 61_706),
    "alexnet": (IMAGENET, 1000, 61_100_840),
    "alexnet_paper": ((1, 227, 227, 3), 1000, 60_965_224),
    "nin_cifar": (CIFAR, 10, 966_986),
    "inception_v3": ((1, 299, 299, 3), 1000, 27_161_264),  # with the auxiliary classifier
    "vgg11": (IMAGENET, 1000, 132_863_336),
    "vgg13": (IMAGENET, 1000, 133_047_848),
    "vgg16": (IMAGENET, 1000, 138_357_544),
    "vgg19": (IMAGENET, 1000, 143_667_240),
    "vgg16_bn": (IMAGENET, 1000, 138_365_992),
    "googlenet": (IMAGENET, 1000, 6_624_904),
    "resnet18": (IMAGENET, 1000, 11_689_512),
    "resnet34": (IMAGENET, 1000, 21_797_672),
    "resnet50": (IMAGENET, 1000, 25_557_032),
    "resnet101": (IMAGENET, 1000, 44_549_160),
    "resnet152": (IMAGENET, 1000, 60_192_808),
    "resnext50_32x4d": (IMAGENET, 1000, 25_028_904),
    "wide_resnet50_2": (IMAGENET, 1000, 68_883_240),
    "densenet121": (IMAGENET, 1000, 7_978_856),
    "squeezenet1_0": (IMAGENET, 1000, 1_248_424),
    "squeezenet1_1": (IMAGENET, 1000, 1_235_496),
    "resnet20": (CIFAR, 10, 269_722),
    "resnet32": (CIFAR, 10, 464_154),
    "resnet44": (CIFAR, 10, 658_586),
    "resnet56": (CIFAR, 10, 853_018),
    "resnet110": (CIFAR, 10, 1_727_962),
    "wrn28_10": (CIFAR, 10, 36_479_194),
    "wrn16_8": (CIFAR, 10, 10_961_370),
    "densenet_bc100_k12": (CIFAR, 10, 769_162),
    # airbench94's PyTorch module, counted by hand: whitening conv 288 + 24, convolutions
    # 1,967,616 (no bias), BatchNorm scales and biases 2,304, linear 2,560 (no bias)
    "airbench94": (CIFAR, 10, 1_972_792),
    # and a third conv + BatchNorm per group: 9 x (64^2 + 2 x 256^2) + 2 x (64 + 256 + 256)
    "airbench_resnet": (CIFAR, 10, 1_972_792 + 1_216_512 + 1_152),
    # 16-16-M-32-32-M-64-64-M: convolutions 72,080, dense 1,024x256 + 256 and 256x10 + 10
    "vgg_small": (CIFAR, 10, 337_050),
}


@pytest.mark.parametrize("name", sorted(PAPER_COUNTS))
def test_parameter_count_equals_the_paper(name):
    shape, classes, expected = PAPER_COUNTS[name]
    assert cost.param_count(models.create(name, num_classes=classes), shape) == expected


def test_alexnet_paper_count_by_the_arithmetic():
    """The paper's network layer by layer, weights + biases; conv2, conv4 and conv5 see only
    their own GPU's half of the previous layer (groups = 2)."""
    convs = [
        11 * 11 * 3 * 96 + 96,  # conv1 on the 227x227x3 image
        5 * 5 * (96 // 2) * 256 + 256,  # conv2, grouped
        3 * 3 * 256 * 384 + 384,  # conv3 connects across both halves
        3 * 3 * (384 // 2) * 384 + 384,  # conv4, grouped
        3 * 3 * (384 // 2) * 256 + 256,  # conv5, grouped
    ]
    dense = [6 * 6 * 256 * 4096 + 4096, 4096 * 4096 + 4096, 4096 * 1000 + 1000]
    assert sum(convs) + sum(dense) == 60_965_224 == PAPER_COUNTS["alexnet_paper"][2]
    # The often quoted 100,207,632 is half of the weights alone (no biases) of a network
    # whose first dense layer reads the unpooled 13x13x256 maps: 43,264 features, not 9,216.
    weights = [c - b for c, b in zip(convs, (96, 256, 384, 384, 256), strict=True)]
    unpooled = 13 * 13 * 256 * 4096 + 4096 * 4096 + 4096 * 1000
    assert sum(weights) + unpooled == 2 * 100_207_632


def test_nin_count_by_the_arithmetic():
    conv = lambda k, c_in, c_out: k * k * c_in * c_out + c_out
    blocks = [
        conv(5, 3, 192) + conv(1, 192, 160) + conv(1, 160, 96),
        conv(5, 96, 192) + conv(1, 192, 192) + conv(1, 192, 192),
        conv(3, 192, 192) + conv(1, 192, 192) + conv(1, 192, 10),
    ]
    assert sum(blocks) == 966_986 == PAPER_COUNTS["nin_cifar"][2]
    shapes = cost.variable_shapes(models.create("nin_cifar"), CIFAR)["params"]
    assert not any("Dense" in name for name in shapes)  # no fully connected layer


def test_inception_v3_without_its_auxiliary_head():
    model = models.create("inception_v3", num_classes=1000, aux_logits=False)
    assert cost.param_count(model, (1, 299, 299, 3)) == 23_834_568


def test_inception_v3_shapes_and_its_auxiliary_loss():
    from jaxdl.step import AUX_WEIGHT, classification

    model = models.create("inception_v3", num_classes=1000, return_aux=True)
    shapes = jax.eval_shape(
        lambda x: model.init_with_output(
            {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}, x, train=True
        )[0],
        jax.ShapeDtypeStruct((2, 299, 299, 3), jnp.float32),
    )
    assert shapes["logits"].shape == shapes["aux"].shape == (2, 1000)
    main, aux = jnp.array([[2.0, 0.0]]), jnp.array([[0.0, 1.0]])
    loss, hits = classification({"logits": main, "aux": aux}, jnp.array([0]))
    expected = optax.softmax_cross_entropy_with_integer_labels(main, jnp.array([0])) + (
        AUX_WEIGHT * optax.softmax_cross_entropy_with_integer_labels(aux, jnp.array([0]))
    )
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    assert float(hits[0]) == 1.0


def test_factorised_7x7_is_a_1x7_then_a_7x1():
    from jaxdl.models.inception_v3 import Blocks
    from jaxdl.tools.summary import summarize

    class Pair(Blocks):
        @nn.compact
        def __call__(self, x, train=False):
            return self.factorised(x, train, (8, 8), 7)

    rows = summarize(Pair(layers="plain"), (1, 17, 17, 8), depth=1)
    assert [r.output_shape for r in rows] == [(1, 17, 17, 8)] * 2  # padded: the grid stays
    # 2 x (7 weights per channel pair) + BatchNorm, against 49 for one 7x7
    assert sum(r.params for r in rows) == 2 * (7 * 8 * 8 + 2 * 8)


def test_lenet_weights_alone():
    shapes = cost.variable_shapes(models.create("lenet5"), (1, 32, 32, 1))["params"]
    kernels = [
        leaf
        for path, leaf in jax.tree_util.tree_leaves_with_path(shapes)
        if path[-1].key == "kernel"
    ]
    assert sum(int(np.prod(k.shape)) for k in kernels) == 61_470


# Every block type and stem runs a real jitted step; deep models are shortened (same code,
# fewer repeats) so the suite compiles in budget. The full models are traced below.
RUN_A_STEP = {
    "linear_regression": ((8, 8, 1), 1, {}),
    "softmax_regression": ((28, 28, 1), 10, {}),
    "mlp": ((28, 28, 1), 10, {}),
    "lenet5": ((28, 28, 1), 10, {}),
    "resnet20": ((32, 32, 3), 10, {}),
    "resnet18": ((32, 32, 3), 10, {"stage_sizes": (1, 1, 1, 1)}),
    "resnet50": ((32, 32, 3), 10, {"stage_sizes": (1, 1, 1, 1)}),
    "resnext_cifar": ((32, 32, 3), 10, {"stage_sizes": (1, 1, 1)}),
    "wrn16_4": ((32, 32, 3), 10, {"dropout_rate": 0.3}),
    "googlenet": ((32, 32, 3), 10, {"stages": (STAGES[0], 3, STAGES[3])}),
    "googlenet_cifar": ((32, 32, 3), 10, {"stages": (STAGES[0], 3, STAGES[3])}),
    "densenet121": ((32, 32, 3), 10, {"block_sizes": (1, 1, 1, 1)}),
    "densenet_bc100_k12": ((32, 32, 3), 10, {"block_sizes": (2, 2, 2)}),
    "squeezenet1_1": ((64, 64, 3), 10, {}),
    "squeezenet_cifar": ((32, 32, 3), 10, {}),
    "vgg11_cifar": ((32, 32, 3), 10, {}),
}


def one_step(model, image_shape, classes, batch=2):
    state = create_train_state(
        model, optax.sgd(0.01, 0.9), jax.random.PRNGKey(0), (1, *image_shape)
    )
    key = jax.random.PRNGKey(1)
    data = {
        "image": jax.random.normal(key, (batch, *image_shape)),
        "label": jax.random.randint(key, (batch,), 0, max(classes, 2)) % classes,
    }
    return jax.jit(train_step)(state, data)


# the five slowest to compile (over ~20 s each) run with the slow tests
SLOW_STEPS = {"googlenet", "googlenet_cifar", "squeezenet1_1", "resnet50", "densenet121"}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.slow) if name in SLOW_STEPS else name
        for name in sorted(RUN_A_STEP)
    ],
)
def test_model_trains_one_step(name):
    image_shape, classes, options = RUN_A_STEP[name]
    model = models.create(name, num_classes=classes, **options)
    state, metrics = one_step(model, image_shape, classes)
    assert np.isfinite(float(metrics["loss"]))
    assert int(state.step) == 1


# (token models read ids, not images: tests/test_sequence.py steps them in every mode)
TOKEN_MODELS = {"char_lstm", "char_transformer", "seq2seq_transformer"}
# (reconstructing and generating models have their own objectives and steps:
# tests/test_generative.py and tests/test_gan.py)
GENERATIVE_MODELS = {"conv_autoencoder", "vae", "dcgan", "dcgan_generator", "dcgan_discriminator"}
# (the detector's outputs are a grid of heatmaps and boxes: tests/test_detection.py)
DETECTION_MODELS = {"centernet"}


@pytest.mark.parametrize(
    "name",
    sorted(
        set(models.names())
        - {"fcn", "linear_regression", "softmax_regression"}
        - TOKEN_MODELS
        - GENERATIVE_MODELS
        - DETECTION_MODELS
    ),
)
def test_big_model_step_shapes(name):
    """The rest of the zoo: the train step traced with `jax.eval_shape` (nothing allocated)."""
    shape, classes, _ = PAPER_COUNTS.get(name, (CIFAR, 10, None))
    model = models.create(name, num_classes=classes)
    shapes = cost.variable_shapes(model, shape)
    state = jax.eval_shape(
        lambda v: TrainState.create(
            apply_fn=model.apply,
            params=v["params"],
            batch_stats=v.get("batch_stats", {}),
            tx=optax.sgd(0.1),
            rng=jax.random.PRNGKey(0),
        ),
        shapes,
    )
    batch = {
        "image": jax.ShapeDtypeStruct((2, *shape[1:]), jnp.float32),
        "label": jax.ShapeDtypeStruct((2,), jnp.int32),
    }
    new_state, metrics = jax.eval_shape(train_step, state, batch)
    assert metrics["loss"].shape == ()
    assert jax.tree.map(lambda a: a.shape, new_state.params) == jax.tree.map(
        lambda a: a.shape, state.params
    )


@pytest.mark.slow
def test_bfloat16_computation_keeps_float32_parameters():
    model = models.create("resnet20", num_classes=10, dtype=jnp.bfloat16, stage_sizes=(1, 1, 1))
    state, metrics = one_step(model, (32, 32, 3), 10)
    assert np.isfinite(float(metrics["loss"]))
    assert {leaf.dtype for leaf in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}
    logits = model.apply(
        {"params": state.params, "batch_stats": state.batch_stats}, jnp.zeros((1, 32, 32, 3))
    )
    assert logits.dtype == jnp.bfloat16


@pytest.mark.parametrize("height, width", [(32, 32), (48, 64), (28, 28)])
def test_fcn_maps_any_divisible_size_to_per_pixel_logits(height, width):
    model = models.create("fcn", num_classes=11)
    variables = cost.variable_shapes(model, (1, height, width, 1))
    logits = jax.eval_shape(model.apply, variables, jnp.zeros((2, height, width, 1)))
    assert logits.shape == (2, height, width, 11)


def test_fcn_trains_a_step_on_per_pixel_labels():
    model = models.create("fcn", num_classes=3, stage_sizes=(1, 1, 1))
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 1)))
    images = jax.random.normal(jax.random.PRNGKey(1), (2, 16, 16, 1))
    masks = (images[..., 0] > 0).astype(jnp.int32)

    def loss(params):
        logits, _ = model.apply(
            {"params": params, "batch_stats": variables["batch_stats"]},
            images,
            train=True,
            mutable=["batch_stats"],
        )
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, masks))

    value, grads = jax.jit(jax.value_and_grad(loss))(variables["params"])
    assert np.isfinite(float(value))
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_dilated_fcn_keeps_the_grid_and_the_weights():
    four = {"stage_sizes": (1, 1, 1, 1), "widths": (16, 32, 64, 128)}
    strided = models.create("fcn", num_classes=11, **four)
    dilated = models.create("fcn", num_classes=11, **four, dilated_stages=2)
    shape = (1, 48, 48, 1)
    assert cost.param_count(strided, shape) == cost.param_count(dilated, shape)
    x = jnp.zeros((2, 20, 20, 1))  # stride 2 now (was 8): 20 is divisible by it
    variables = dilated.init(jax.random.PRNGKey(0), x)
    assert dilated.apply(variables, x).shape == (2, 20, 20, 11)
    kernels = [
        leaf.shape
        for path, leaf in jax.tree_util.tree_leaves_with_path(variables["params"])
        if path[-1].key == "kernel" and "BasicBlock_3" in str(path)
    ]
    assert kernels and all(k[:2] in ((3, 3), (1, 1)) for k in kernels)
    with pytest.raises(ConfigError, match="dilated_stages"):
        models.create("fcn", num_classes=2, dilated_stages=3).init(jax.random.PRNGKey(0), x)


def test_fcn_rejects_sizes_not_divisible_by_its_stride():
    with pytest.raises(ConfigError, match="divisible by its stride 4, got 30x30"):
        models.create("fcn", num_classes=2).init(jax.random.PRNGKey(0), jnp.zeros((1, 30, 30, 1)))


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown model 'resnet21'; known models: .*resnet20"):
        models.create("resnet21")


def test_option_a_shortcut_pads_channels_and_subsamples():
    from jaxdl.nn.residual import pad_shortcut

    x = jnp.arange(1 * 4 * 4 * 2, dtype=jnp.float32).reshape(1, 4, 4, 2)
    y = pad_shortcut(x, 6, 2)
    assert y.shape == (1, 2, 2, 6)
    np.testing.assert_array_equal(y[..., 2:4], x[:, ::2, ::2, :])
    assert float(jnp.abs(y[..., :2]).sum() + jnp.abs(y[..., 4:]).sum()) == 0.0


def test_maxout_takes_the_max_of_each_group():
    from jaxdl.nn import maxout

    x = jnp.array([[1.0, 5.0, -2.0, -3.0, 0.5, 0.25]])
    np.testing.assert_array_equal(maxout(x, 2), [[5.0, -2.0, 0.5]])
    with pytest.raises(ConfigError, match="divisible by pieces=4"):
        maxout(x, 4)


def test_prelu_learns_one_slope_per_unit_and_leaky_relu_takes_its_slope():
    from jaxdl.nn.activations import PReLU

    x = jnp.array([[-2.0, 3.0], [4.0, -1.0]])
    variables = PReLU().init(jax.random.PRNGKey(0), x)
    assert variables["params"]["slope"].shape == (2,)
    np.testing.assert_allclose(PReLU().apply(variables, x), [[-0.5, 3.0], [4.0, -0.25]])
    slopes = {"params": {"slope": jnp.array([0.1, 2.0])}}
    np.testing.assert_allclose(PReLU().apply(slopes, x), [[-0.2, 3.0], [4.0, -2.0]])
    mlp = lambda act, **kw: models.create("mlp", num_classes=3, widths=(5,), act=act, **kw)
    shape = (1, 4, 4, 1)
    assert cost.param_count(mlp("prelu"), shape) == cost.param_count(mlp("relu"), shape) + 5
    images = -jnp.ones(shape)
    params = mlp("leaky_relu").init(jax.random.PRNGKey(0), images)
    outputs = [mlp("leaky_relu", leaky_slope=s).apply(params, images) for s in (0.01, 0.1)]
    assert not np.allclose(outputs[0], outputs[1])


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu", "maxout"])
def test_mlp_with_every_activation(act):
    model = models.create("mlp", num_classes=10, widths=(16, 16), act=act, dropout_rate=0.1)
    state, metrics = one_step(model, (28, 28, 1), 10, batch=4)
    assert np.isfinite(float(metrics["loss"]))
    kernel = state.params["Maxout_0" if act == "maxout" else "Dense_0"]
    assert jax.tree.leaves(kernel)[-1].shape[-1] == (32 if act == "maxout" else 16)


def test_forward_flops_of_resnet20_is_about_82_mflops():
    # He et al.: ResNet-20 is ~41 M multiply-adds; XLA counts ~76 MFLOPs (it skips some adds).
    flops = cost.forward_flops(models.create("resnet20"), CIFAR)
    assert 60e6 < flops < 90e6


def test_zero_init_residual_zeroes_the_last_bn_scale():
    model = functools.partial(models.create, "resnet20", num_classes=10)
    shapes = cost.variable_shapes(model(zero_init_residual=True), CIFAR)
    params = create_train_state(
        model(zero_init_residual=True), optax.sgd(0.1), jax.random.PRNGKey(0), CIFAR
    ).params
    block = params["BasicBlock_0"]["ConvBN_1"]["BatchNorm_0"]["bn"]["scale"]
    assert float(jnp.abs(block).sum()) == 0.0
    assert shapes["params"]["BasicBlock_0"]["ConvBN_1"]["BatchNorm_0"]["bn"]["scale"].shape == (16,)


def test_forward_flops_count_a_grouped_convolution_as_grouped():
    # the XLA:CPU path runs it as a dense convolution with a block-diagonal kernel; the count
    # is the model's own arithmetic: 2 * 64 * 64 / groups per tap, 22 * 22 taps inside 8 x 8
    import flax.linen as nn

    from jaxdl.nn import Conv

    class Grouped(nn.Module):
        groups: int
        layers: str = "auto"  # forward_flops counts with the plain layers

        @nn.compact
        def __call__(self, x, train=False):
            return Conv(64, 3, groups=self.groups, use_bias=False, layers=self.layers)(x)

    flops = {g: cost.forward_flops(Grouped(g), (1, 8, 8, 64)) for g in (1, 4)}
    assert flops[1] == 2 * 22 * 22 * 64 * 64
    assert flops[4] == pytest.approx(flops[1] / 4, rel=0.05)
