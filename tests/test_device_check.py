"""`benchmarks.device_check`: what it says on a machine without an accelerator, and every
check run end to end at toy sizes (`--smoke`) on the CPU's eight fake devices."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from benchmarks import device_check
from tests.conftest import REPO


def test_cpu_only_machine_reports_no_accelerator_within_a_minute():
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.device_check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert time.perf_counter() - start < 60
    lines = done.stdout.splitlines()
    assert re.match(r"jax \S+, backend cpu, \d+ device\(s\) in 1 process\(es\)", lines[0])
    assert lines[-1].startswith("no accelerator:")


def test_devices_are_listed_one_per_line():
    lines = device_check.describe_devices()
    assert "8 device(s)" in lines[0]  # the suite's fake devices
    assert [line.split(":")[0].strip() for line in lines[1:]] == [str(i) for i in range(8)]


@pytest.mark.slow
def test_smoke_run_measures_compares_and_trains(capsys, data_dir):
    assert device_check.main(["--smoke", "--data_dir", data_dir]) == 0
    out = capsys.readouterr().out
    rates = re.findall(
        r"^(resnet\d+) 32x32 batch \d+ (float32|bfloat16): train ([\d,]+) img/s", out, re.M
    )
    assert {(name, dtype) for name, dtype, _ in rates} == {
        (name, dtype) for name in ("resnet20", "resnet50") for dtype in ("float32", "bfloat16")
    }
    assert all(float(rate.replace(",", "")) > 0 for _, _, rate in rates)
    for mode in ("pmap", "sharded"):
        match = re.search(rf"^{mode} over 8 device\(s\) vs single: .* ([\d.e+-]+) \(ok;", out, re.M)
        assert match and float(match.group(1)) <= device_check.PARALLEL_TOLERANCE
    assert re.search(r"^CIFAR-10 ResNet-20, 1 epochs: test accuracy [\d.]+ %", out, re.M)


def test_onednn_layers_are_refused_off_the_cpu(monkeypatch):
    from jaxdl import build
    from jaxdl.config import TrainConfig
    from jaxdl.errors import ConfigError

    monkeypatch.setattr(build.jax, "default_backend", lambda: "gpu")
    with pytest.raises(ConfigError, match="--layers onednn runs on the CPU only.*backend is gpu"):
        build.create_model(TrainConfig(model="resnet20", layers="onednn"), 10)
    assert build.create_model(TrainConfig(model="resnet20", layers="auto"), 10).layers == "auto"
