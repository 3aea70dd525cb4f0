"""Model summaries: receptive-field arithmetic against hand-computed values, totals, the CLI."""

import subprocess
import sys

import pytest

from jaxdl import models
from jaxdl.errors import ConfigError
from jaxdl.tools.summary import Field, parse_input, receptive_fields, summarize
from tests.conftest import REPO


def test_two_3x3_convs_see_5x5():
    assert receptive_fields([(3, 1), (3, 1)])[-1] == Field(5, 1)


def test_conv_pool_conv_sees_8x8():
    assert receptive_fields([(3, 1), (2, 2), (3, 1)]) == [Field(3, 1), Field(4, 2), Field(8, 2)]


def test_stride_multiplies_the_jump():
    # 7x7/2 conv, 3x3/2 pool (ResNet stem): 7, then 7 + 2 * 2 = 11 with jump 4
    assert receptive_fields([(7, 2), (3, 2)]) == [Field(7, 2), Field(11, 4)]


def resnet20_field_by_hand() -> int:
    field, jump = 3, 1  # 3x3 stem
    for stage in range(3):
        for conv in range(6):  # 3 blocks x two 3x3 convs
            field += 2 * jump
            if stage > 0 and conv == 0:
                jump *= 2  # the first conv of stages 2 and 3 has stride 2
    return field


def test_resnet20_summary_rows():
    rows = summarize(models.create("resnet20"), (1, 32, 32, 3))
    assert [r.kind for r in rows] == ["ConvBN"] + ["BasicBlock"] * 9 + ["Dense"]
    assert sum(r.params for r in rows) == 269_722
    assert rows[-1].field.size == resnet20_field_by_hand() == 81
    assert rows[3].output_shape == (1, 32, 32, 16) and rows[4].output_shape == (1, 16, 16, 32)
    assert all(r.flops > 0 for r in rows[:-1])


def test_lenet_sees_exactly_its_32x32_input():
    rows = summarize(models.create("lenet5"), (1, 32, 32, 1))
    fields = [r.field.size for r in rows if r.kind in ("Conv", "MaxPool")]
    assert fields == [5, 6, 14, 16, 32]


def test_alexnet_paper_feature_maps_and_dense_input():
    rows = summarize(models.create("alexnet_paper", layers="plain"), (1, 227, 227, 3))
    spatial = [r.output_shape[1] for r in rows if r.kind in ("Conv", "MaxPool")]
    assert spatial == [55, 27, 27, 13, 13, 13, 13, 6]
    first_dense = next(i for i, r in enumerate(rows) if r.kind == "Dense")
    assert rows[first_dense - 1].output_shape == (1, 9216)  # 6 x 6 x 256 features
    assert [r.kind for r in rows].count("LocalResponseNorm") == 2


def test_summary_command_prints_totals():
    result = subprocess.run(
        [sys.executable, "-m", "jaxdl.tools.summary", "resnet20", "--input", "32x32x3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    total = result.stdout.strip().splitlines()[-1].split()
    assert total[0] == "total" and total[1] == "269,722" and total[-1] == "81"


def test_bad_input_shape_is_one_sentence():
    with pytest.raises(ConfigError, match="--input must look like 32x32x3"):
        parse_input("32by32")
