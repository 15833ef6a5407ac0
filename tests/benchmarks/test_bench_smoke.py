"""The GPU and extraction benchmarks run in their reduced CPU modes and print positive, parseable numbers."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NUMBER = r"([0-9]+(?:\.[0-9]+)?)"


def run_script(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
def test_gpu_benchmark_cpu_smoke_prints_every_measurement():
    out = run_script("benchmarks/bench_gpu.py", "--cpu-smoke", "--workers", "1")
    assert "cpu_capability" in out
    for mode in ("per-sample", "gpu-augment"):
        line = next(line for line in out.splitlines() if line.startswith(f"pretrain[{mode}]"))
        values = {key: float(value) for key, value in re.findall(rf"([a-z_/]+)={NUMBER}", line)}
        assert values["img/s"] > 0 and values["gflop_per_step"] > 0 and values["tflop/s"] > 0
        assert 0 < values["data_wait"] < 100
        assert "mfu=n/a" in line  # a CPU has no entry in the bf16 peak table
    extract = re.search(rf"^extract\[resnet_tiny 32px eval no_grad\] img/s={NUMBER}$", out, re.MULTILINE)
    assert extract and float(extract.group(1)) > 0
    detection = re.search(rf"^detection\[resnet_tiny R-C4 faster-rcnn train short=96 images/step=1\] img/s={NUMBER}$",
                          out, re.MULTILINE)
    assert detection and float(detection.group(1)) > 0
    vos = re.search(rf"^vos\[resnet_tiny 48x64 layer3 stride8\] frames/s={NUMBER} backbone_share={NUMBER}$", out,
                    re.MULTILINE)
    assert vos and float(vos.group(1)) > 0 and 0 < float(vos.group(2)) < 1


def test_extraction_benchmark_smoke_prints_both_sides_and_their_ratio():
    out = run_script("benchmarks/bench_extraction.py", "--smoke")
    ours = float(re.search(rf"mec-eval extraction img/s={NUMBER}", out).group(1))
    plain = float(re.search(rf"plain torchvision img/s={NUMBER}", out).group(1))
    ratio = float(re.search(rf"ratio={NUMBER}x", out).group(1))
    assert ours > 0 and plain > 0
    assert ratio == pytest.approx(ours / plain, rel=1e-2)  # the printed img/s are rounded
    assert "cpu_capability" in out


def test_linear_grid_benchmark_smoke_prints_both_sides_and_their_ratio():
    out = run_script("benchmarks/bench_linear_grid.py", "--smoke")
    one = float(re.search(rf"one head: {NUMBER} s", out).group(1))
    grid = float(re.search(rf"3 heads in one pass: {NUMBER} s", out).group(1))
    ratio = float(re.search(rf"ratio {NUMBER}x one run", out).group(1))
    assert one > 0 and grid > 0 and ratio == pytest.approx(grid / one, rel=0.01)  # printed seconds are rounded


@pytest.mark.slow
def test_detection_train_benchmark_smoke_prints_both_modes_and_the_ratio_when_detectron2_is_there():
    out = run_script("benchmarks/bench_detection_train.py", "--smoke")
    assert "cpu_capability" in out
    with_d2 = "detectron2 yes" in out
    native = re.search(r"native bf16 (True|False)", out).group(1) == "True"
    from mec_eval.dist import cpu_has_bf16
    assert native is cpu_has_bf16()
    for mode in ("fp32", "bf16+channels_last"):
        line = next(line for line in out.splitlines() if line.startswith(f"[{mode}]"))
        if mode != "fp32" and not native:  # emulated bf16 is not timed (100x slower, says nothing)
            assert "skipped: no native bf16" in line
            continue
        engine = float(re.search(rf"engine {NUMBER} s/step", line).group(1))
        assert engine > 0
        if with_d2:  # the ratio is the printed detectron2 time over the engine's
            d2 = float(re.search(rf"detectron2 {NUMBER} s/step", line).group(1))
            ratio = float(re.search(rf"ratio detectron2/engine {NUMBER}", line).group(1))
            assert ratio == pytest.approx(d2 / engine, rel=0.01)
        else:
            assert "ratio" not in line
