"""The benchmarks' own logic that their figures rest on: which convolutions a model has, and
how timings from separate processes are put together. (Their timings are not tested: speed is
measured by running them, see BENCHMARKS.md.)"""

from __future__ import annotations

import collections

import pytest

from benchmarks import conv_layers, train_throughput


def test_conv_layers_lists_resnet20s_nineteen_convolutions():
    layers = conv_layers.conv_layers("resnet20", batch=4)
    counts = collections.Counter(conv_layers.layer_key(layer) for layer in layers)
    # He et al. 2016, CIFAR ResNet-20: a 3x3 stem and 3 stages of 3 blocks of two 3x3 convs
    # (16, 32, 64 channels); option-A shortcuts have no convolution.
    assert len(layers) == 19
    assert counts == {
        "32x32x3 -> 16, 3x3/1": 1,
        "32x32x16 -> 16, 3x3/1": 6,
        "32x32x16 -> 32, 3x3/2": 1,
        "16x16x32 -> 32, 3x3/1": 5,
        "16x16x32 -> 64, 3x3/2": 1,
        "8x8x64 -> 64, 3x3/1": 5,
    }
    assert layers[0]["input"] == [4, 32, 32, 3] and layers[0]["kernel"] == [3, 3, 3, 16]


def test_conv_layers_finds_resnet18s_projection_shortcuts():
    layers = conv_layers.conv_layers("resnet18_cifar", batch=2)
    one_by_one = [layer for layer in layers if layer["kernel"][:2] == [1, 1]]
    # 1 stem + 8 blocks x 2 convs + 3 projection shortcuts (1x1, stride 2) = 20
    assert len(layers) == 20
    assert [layer["kernel"][2:] for layer in one_by_one] == [[64, 128], [128, 256], [256, 512]]
    assert all(layer["strides"] == [2, 2] for layer in one_by_one)


def test_merge_concatenates_rates_across_processes():
    def run(framework, rates, compile_seconds):
        params = {framework: 270_000}
        flops = 1e9 if framework == "jaxdl" else None
        phase = [{"name": framework, "rates": rates, "compile_seconds": compile_seconds}]
        return {"params": params, "flops": flops, "train": phase, "eval": phase}

    merged = train_throughput.merge(
        [run("jaxdl", [1.0, 2.0], 5.0), run("torch", [3.0], 1.0), run("jaxdl", [4.0], 7.0)]
    )
    assert merged["params"] == {"jaxdl": 270_000, "torch": 270_000}
    assert merged["flops"] == 1e9
    assert [c["name"] for c in merged["train"]] == ["jaxdl", "torch"]
    assert merged["train"][0]["rates"] == [1.0, 2.0, 4.0]
    assert merged["train"][0]["compile_seconds"] == pytest.approx(6.0)


def test_report_refuses_networks_of_different_sizes():
    phase = [{"name": "jaxdl", "rates": [1.0], "compile_seconds": 0.0}]
    result = {"params": {"jaxdl": 10, "torch": 11}, "flops": 1.0, "train": phase, "eval": phase}
    with pytest.raises(SystemExit, match="11 parameters, jaxdl's 10"):
        train_throughput.report("resnet20", result, peak=100.0)
