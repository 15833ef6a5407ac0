"""The supervised shapes reference: its crops are real windows, it learns, and its checkpoint loads as trained."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "supervised_reference.py"


@pytest.fixture(scope="module")
def reference():
    spec = importlib.util.spec_from_file_location("supervised_reference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _window(image: torch.Tensor, dy: int, dx: int, flip: bool) -> torch.Tensor:
    window = image[:, dy:dy + 32, dx:dx + 32]
    return window.flip(2) if flip else window


def test_augment_takes_a_padded_window_per_image_flipped_or_not(reference):
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    crops = reference.augment(images, torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(reference.normalise(images), (4, 4, 4, 4), mode="reflect")
    found = set()
    for crop, pad in zip(crops, padded):
        windows = [(dy, dx, flip) for dy in range(9) for dx in range(9) for flip in (False, True)
                   if torch.equal(crop, _window(pad, dy, dx, flip))]
        assert windows, "a crop that is no window of its padded image"
        found.add(windows[0])
    assert len(found) > 4 and {flip for *_, flip in found} == {False, True}  # offsets and flips per image


def test_training_fits_a_small_set_and_the_checkpoint_loads_as_trained(reference, tmp_path):
    from mec_eval.checkpoints import load_encoder

    torch.set_num_threads(1)
    images, labels = reference.render("train", 40)
    backbone, head, history = reference.train((images, labels), (images, labels), epochs=20, batch=40, lr=0.1,
                                              seed=0, log=lambda _line: None)
    assert history[0][2] <= 0.3 and history[-1][2] >= 0.6  # chance is 0.1; 40 images are learnable in 20 steps
    reference.save(backbone, tmp_path / "sup.pt", 20, history[-1][2])
    encoder = load_encoder(str(tmp_path / "sup.pt"))
    assert encoder.method == "supervised" and encoder.epoch == 20
    x = reference.normalise(images[:4])
    backbone.eval()
    encoder.backbone.eval()
    with torch.no_grad():
        torch.testing.assert_close(encoder.backbone(x).flatten(1), backbone(x).flatten(1))


@pytest.mark.parametrize("args", [["--out", "{tmp}/exists.pt"], ["--out", "{tmp}/missing/<b>$x$</b>.pt"],
                                  ["--out", "{tmp}/x.pt", "--epochs", "two"], ["--out", "{tmp}/x.pt", "--epochs", "0"],
                                  ["--out", "{tmp}/x.pt", "--batch", "6000"], ["--out", "{tmp}"]])
def test_bad_arguments_exit_2_with_one_line_before_any_training(tmp_path, args):
    import subprocess
    import sys

    (tmp_path / "exists.pt").write_bytes(b"keep")
    done = subprocess.run([sys.executable, str(SCRIPT), *(a.format(tmp=tmp_path) for a in args)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("supervised_reference.py: error:") and done.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.pt"]
    assert (tmp_path / "exists.pt").read_bytes() == b"keep"
