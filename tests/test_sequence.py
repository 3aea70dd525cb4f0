"""Sequence layers and models: scans equal loops, padding changes nothing real, causal attention
never looks ahead, parameter counts follow the formulas, generation equals a step-by-step
reference, and every parallel mode takes the same step."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxdl import generate, models, parallel
from jaxdl.errors import ConfigError
from jaxdl.nn.attention import sinusoidal_positions
from jaxdl.nn.recurrent import CELLS, Recurrent, make_cell
from jaxdl.ops.lstm import lstm_sequence
from jaxdl.optim import OptimizerConfig, create_optimizer
from jaxdl.state import count_params, create_train_state

KEY = jax.random.PRNGKey(0)


def init(module, *inputs):
    return module.init(KEY, *inputs)


def assert_trees_close(actual, expected, tolerance=1e-6):
    """Every leaf within `tolerance` times the tree's largest magnitude: float32 sums taken
    in another order (a scan against a loop) differ in the last bits of the largest
    entries, ~1e-7 relative."""
    scale = max(float(jnp.max(jnp.abs(leaf))) for leaf in jax.tree.leaves(expected))
    chex.assert_trees_all_close(actual, expected, atol=tolerance * max(scale, 1.0), rtol=0)


@pytest.mark.parametrize("kind", CELLS)
def test_scan_equals_a_python_loop_over_the_cell(kind):
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 7, 5))
    layer = Recurrent(kind, 6)
    variables = init(layer, x)
    cell = make_cell(kind, 6)

    def scanned(params):
        outputs, final = layer.apply({"params": params}, x)
        return jnp.sum(outputs**2) + jnp.sum(final), outputs

    def looped(params):
        cell_params = {"params": params["forward_0"]}
        carry = cell.initialize_carry(KEY, x[:, 0].shape)
        outputs = []
        for t in range(x.shape[1]):  # the reference: one cell call per step
            carry, y = cell.apply(cell_params, carry, x[:, t])
            outputs.append(y)
        outputs = jnp.stack(outputs, 1)
        return jnp.sum(outputs**2) + jnp.sum(outputs[:, -1]), outputs

    # (jitted both: the loop is unrolled into one program, still one cell call per step)
    (value, outputs), grads = jax.jit(jax.value_and_grad(scanned, has_aux=True))(
        variables["params"]
    )
    (ref_value, ref_outputs), ref_grads = jax.jit(jax.value_and_grad(looped, has_aux=True))(
        variables["params"]
    )
    np.testing.assert_allclose(outputs, ref_outputs, atol=1e-6)
    np.testing.assert_allclose(value, ref_value, rtol=1e-6)
    assert_trees_close(grads, ref_grads)


def test_lstm_without_padding_takes_the_hand_written_backward_and_agrees_with_flax_scan():
    """Without `lengths` an LSTM layer runs `lstm_sequence` (custom VJP); with full lengths
    it runs flax's `nn.RNN` scan. Both directions, two layers: same values and gradients."""
    x = jax.random.normal(jax.random.PRNGKey(4), (3, 9, 5))
    layer = Recurrent("lstm", 6, num_layers=2, bidirectional=True)
    params = init(layer, x)["params"]

    def loss(params, lengths):
        outputs, final = layer.apply({"params": params}, x, lengths)
        return jnp.sum(jnp.sin(outputs)) + jnp.sum(final**2), outputs

    fast = jax.jit(jax.value_and_grad(loss, has_aux=True))(params, None)
    scanned = jax.jit(jax.value_and_grad(loss, has_aux=True))(params, jnp.full((3,), 9))
    chex.assert_trees_all_close(fast, scanned, atol=1e-5, rtol=1e-5)


def test_lstm_sequence_gradients_match_finite_differences():
    keys = jax.random.split(jax.random.PRNGKey(5), 4)
    shapes = ((2, 4, 12), (3, 12), (2, 3), (2, 3))  # gates [B, T, 4h], kernel, c0, h0
    args = [np.asarray(jax.random.normal(k, s)) for k, s in zip(keys, shapes, strict=True)]
    with jax.enable_x64(True):  # float64: finite differences this fine need it
        check_grads(lstm_sequence, [jnp.asarray(a, jnp.float64) for a in args], 1, ("rev",))


@pytest.mark.parametrize("kind, bidirectional", [("lstm", True), ("gru", False), ("rnn", True)])
def test_padding_leaves_real_steps_and_gradients_unchanged(kind, bidirectional):
    lengths = jnp.array([5, 3])
    x = jax.random.normal(jax.random.PRNGKey(2), (2, 5, 4))
    x = x * (jnp.arange(5)[None, :, None] < lengths[:, None, None])  # zeros after the end
    padded = jnp.concatenate([x, jax.random.normal(jax.random.PRNGKey(3), (2, 4, 4))], 1)
    layer = Recurrent(kind, 6, num_layers=2, bidirectional=bidirectional)
    variables = init(layer, x)
    real = jnp.arange(5)[None, :] < lengths[:, None]

    def loss(params, inputs):
        outputs, final = layer.apply({"params": params}, inputs, lengths)
        return jnp.sum(final**2) + jnp.sum(jnp.where(real[..., None], outputs[:, :5], 0) ** 2)

    apply = jax.jit(layer.apply)
    (out, final) = apply(variables, x, lengths)
    (out_padded, final_padded) = apply(variables, padded, lengths)
    np.testing.assert_allclose(
        jnp.where(real[..., None], out_padded[:, :5], 0),
        jnp.where(real[..., None], out, 0),
        atol=1e-6,
    )
    np.testing.assert_allclose(final_padded, final, atol=1e-6)
    grad = jax.jit(jax.grad(loss))
    assert_trees_close(grad(variables["params"], padded), grad(variables["params"], x))
    # and the final state is the last real step's, not the last step's
    assert not np.allclose(apply(variables, padded, None)[1], final_padded, atol=1e-3)


@pytest.mark.parametrize(
    "kind, formula",
    [
        ("lstm", lambda x, h: 4 * h * (x + h) + 4 * h),  # input bias only (fused gates)
        ("gru", lambda x, h: 3 * h * (x + h) + 4 * h),  # flax: 3 input biases + candidate's
        ("rnn", lambda x, h: h * (x + h) + h),
    ],
)
def test_cell_parameter_counts_follow_the_formulas(kind, formula):
    for x, h in ((28, 128), (3, 7)):
        shapes = jax.eval_shape(functools.partial(init, Recurrent(kind, h)), jnp.zeros((1, 2, x)))
        assert count_params(shapes["params"]) == formula(x, h)
    two = jax.eval_shape(lambda: init(Recurrent(kind, 7, 2, True), jnp.zeros((1, 2, 3))))
    assert count_params(two["params"]) == 2 * (formula(3, 7) + formula(14, 7))


def test_lstm_forget_gate_bias_starts_at_one():
    bias = init(Recurrent("lstm", 4), jnp.zeros((1, 2, 3)))["params"]["forward_0"]["input"]["bias"]
    np.testing.assert_array_equal(bias, [0] * 4 + [1] * 4 + [0] * 8)  # gates i, f, g, o


def test_zoo_sequence_models_count_their_parameters():
    def count(name, x, **options):
        model = models.create(name, **options)
        return count_params(jax.eval_shape(lambda: model.init(KEY, x))["params"])

    images = jnp.zeros((1, 28, 28, 1))
    # an LSTM on 28 pixels per row with 128 units, then a 128 -> 10 classifier
    assert count("lstm_classifier", images, num_classes=10) == 4 * 128 * 156 + 512 + 1290
    assert count("gru_classifier", images, num_classes=10) == 3 * 128 * 156 + 512 + 1290
    assert count("rnn_classifier", images, num_classes=10) == 128 * 156 + 128 + 1290
    tokens = jnp.zeros((1, 16), jnp.int32)
    # embedding 50 x 64, LSTMs 64 -> 512 and 512 -> 512, output 512 -> 50
    lstm = 50 * 64 + (4 * 512 * 576 + 2048) + (4 * 512 * 1024 + 2048) + 512 * 50 + 50
    assert count("char_lstm", tokens, num_classes=50) == lstm


def test_causal_attention_never_looks_ahead():
    model = models.create("char_transformer", num_classes=20, dim=32, heads=4, depth=2, mlp_dim=64)
    tokens = jax.random.randint(jax.random.PRNGKey(4), (2, 12), 1, 20)
    variables = model.init(KEY, tokens)
    logits = model.apply(variables, tokens)
    for position in (3, 11):
        changed = tokens.at[:, position].set((tokens[:, position] + 1) % 20)
        after = model.apply(variables, changed)
        np.testing.assert_array_equal(after[:, :position], logits[:, :position])
        assert not np.allclose(after[:, position], logits[:, position])


def test_translator_ignores_source_padding_and_the_target_ahead():
    model = models.create("seq2seq_transformer", num_classes=15, source_length=6, dim=32)
    source = jnp.array([[3, 4, 5, 0, 0, 0]])
    target = jnp.array([[1, 7, 8, 9]])
    variables = model.init(KEY, jnp.concatenate([source, target], 1))
    logits = model.apply(variables, jnp.concatenate([source, target], 1))
    longer = model.apply(variables, jnp.concatenate([source.at[:, 4].set(0), target], 1))
    np.testing.assert_array_equal(longer, logits)  # padding is padding, whatever its position
    ahead = model.apply(variables, jnp.concatenate([source, target.at[:, 3].set(2)], 1))
    np.testing.assert_array_equal(ahead[:, :3], logits[:, :3])


def test_sinusoidal_positions_are_the_papers():
    table = sinusoidal_positions(50, 16)
    position, i = 7, 3
    assert table[position, 2 * i] == pytest.approx(np.sin(position / 10000 ** (2 * i / 16)))
    assert table[position, 2 * i + 1] == pytest.approx(np.cos(position / 10000 ** (2 * i / 16)))


@pytest.mark.parametrize("name", ["char_lstm", "char_transformer"])
def test_jitted_greedy_sampling_equals_a_step_by_step_reference(name):
    options = {"hidden": 32, "embed": 8} if name == "char_lstm" else {"dim": 32, "mlp_dim": 64}
    model = models.create(name, num_classes=11, **options)
    prompt = jnp.array([[1, 2, 3], [4, 5, 6]])
    variables = model.init(KEY, prompt)
    out = generate.sample(model.apply, variables, prompt, KEY, length=10, temperature=0.0)
    reference = np.asarray(prompt)
    apply = jax.jit(model.apply)
    while reference.shape[1] < 10:  # the model on the prefix written so far
        logits = apply(variables, jnp.asarray(reference))[:, -1]
        reference = np.concatenate([reference, np.argmax(logits, -1)[:, None]], 1)
    np.testing.assert_array_equal(out, reference)


def test_sampling_respects_top_k_and_temperature():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    draws = jnp.stack(
        [generate.choose(logits, jax.random.PRNGKey(i), 1.0, 2)[0] for i in range(400)]
    )
    assert set(np.unique(draws)) == {0, 1}  # top-2 only
    assert 0.5 < np.mean(draws == 0) < 0.75  # 0.5 / 0.8 = 0.625
    cold = [generate.choose(logits, jax.random.PRNGKey(i), 0.05, 0)[0] for i in range(50)]
    assert all(int(c) == 0 for c in cold)


def test_greedy_decode_equals_a_step_by_step_reference():
    model = models.create(
        "seq2seq_transformer",
        num_classes=12,
        source_length=5,
        dim=16,
        heads=2,
        encoder_depth=1,
        decoder_depth=1,
        mlp_dim=32,
    )
    source = jnp.array([[3, 4, 5, 0, 0], [6, 7, 0, 0, 0]])
    variables = model.init(KEY, jnp.zeros((2, 11), jnp.int32))
    out = generate.greedy_decode(model.apply, variables, source, length=6, start_token=1)
    shifted = np.ones((2, 1), np.int32)
    apply = jax.jit(model.apply)
    for _ in range(6):
        logits = apply(variables, jnp.concatenate([source, jnp.asarray(shifted)], 1))
        shifted = np.concatenate([shifted, np.argmax(logits[:, -1], -1)[:, None]], 1)
    np.testing.assert_array_equal(out, shifted[:, 1:])


def test_gradient_clipping_bounds_the_update():
    params = {"w": jnp.zeros(3)}
    grads = {"w": jnp.array([300.0, 400.0, 0.0])}  # norm 500
    config = OptimizerConfig(name="sgd", lr=1.0, schedule="constant", clip_grad_norm=2.0)
    tx, _ = create_optimizer(config, 1, 1)
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], [-1.2, -1.6, 0.0], rtol=1e-6)
    with pytest.raises(ConfigError, match="--clip_grad_norm must be 0 .off. or a positive"):
        OptimizerConfig(clip_grad_norm=-1.0).validate()


def test_unknown_cells_and_activations_are_refused():
    with pytest.raises(ConfigError, match="unknown recurrent cell 'lstn'; choose one of rnn"):
        make_cell("lstn", 4)
    with pytest.raises(ConfigError, match="unknown RNN activation 'relu6'"):
        make_cell("rnn", 4, "relu6")


# One training step in every parallel mode on 8 fake devices, against one device.
SEQUENCE_CASES = {
    "lstm_classifier": ({"hidden": 16}, "images"),
    "gru_classifier": ({"hidden": 16}, "images"),
    "rnn_classifier": ({"hidden": 16}, "images"),
    "transformer_classifier": ({"dim": 16, "mlp_dim": 32, "dropout_rate": 0.1}, "images"),
    "char_lstm": ({"hidden": 16, "embed": 8, "dropout_rate": 0.1}, "tokens"),
    "char_transformer": ({"dim": 16, "heads": 2, "depth": 1, "mlp_dim": 32}, "tokens"),
    "seq2seq_transformer": (
        {
            "dim": 16,
            "heads": 2,
            "source_length": 6,
            "encoder_depth": 1,
            "decoder_depth": 1,
            "mlp_dim": 32,
        },
        "pairs",
    ),
}


def sequence_batch(kind: str, size: int = 16):
    keys = jax.random.split(jax.random.PRNGKey(5), 2)
    if kind == "images":
        images = jax.random.normal(keys[0], (size, 10, 10, 1))
        return {"image": images, "label": jax.random.randint(keys[1], (size,), 0, 10)}
    tokens = jax.random.randint(keys[0], (size, 13), 1, 10)
    labels = tokens[:, 7:] if kind == "pairs" else tokens[:, 1:]
    return {"image": tokens[:, :-1], "label": labels}


# SGD: Adam would turn the attention key bias's zero gradient (softmax ignores a shift shared
# by all keys) into full-size updates of the rounding noise's sign.
@pytest.mark.parametrize(
    "name",
    [
        n if n == "lstm_classifier" else pytest.param(n, marks=pytest.mark.slow)
        for n in sorted(SEQUENCE_CASES)
    ],
)
def test_one_step_is_the_same_in_every_parallel_mode(name):
    options, kind = SEQUENCE_CASES[name]
    batch = sequence_batch(kind)
    config = OptimizerConfig(name="sgd", lr=0.5, schedule="constant", clip_grad_norm=1.0)
    tx, _ = create_optimizer(config, 1, 1)
    results = {}
    for mode in parallel.MODES:
        model = parallel.model_for_mode(models.create(name, num_classes=10, **options), mode)
        state = create_train_state(
            model, tx, KEY, (1, *batch["image"].shape[1:]), batch["image"].dtype
        )
        initial = jax.device_get(state.params)  # the step donates the state
        runner = parallel.create_runner(mode)
        new_state, metrics = runner.train(runner.put_state(state), batch)
        results[mode] = jax.device_get(runner.local_state(new_state).params)
    for mode in ("pmap", "sharded"):
        chex.assert_trees_all_close(results[mode], results["single"], atol=5e-4, rtol=0)
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), results["single"], initial)
    assert max(jax.tree.leaves(moved)) > 1e-3  # the step did change the parameters
