"""The on-disk pre-training data path: uint8 decoding, the per-image TensorView against torchvision
v2 (same draws) and its functional ops (same outputs), the batched cropped path against the same ops,
the backend wiring, resumable seeding, and the benchmark's smoke mode."""
import importlib.util
import io
import re
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from mec_eval.config import DataConfig
from mec_eval.data import build_dataset
from mec_eval.data.decode import decode_rgb
from mec_eval.data.folders import UnreadableImage, load_rgb
from mec_eval.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from mec_eval.pretrain.augment import TensorView, TwoCrops, view_transform
from mec_eval.pretrain.batch_augment import BLUR_SIGMA, ViewRecipe, augment_cropped, view_recipes
from mec_eval.pretrain.inputs import build_training_inputs
from mec_eval.training.sampling import SeededItems

REPO = Path(__file__).resolve().parents[2]


def _smooth_image(seed: int, height: int = 45, width: int = 60) -> np.ndarray:
    low = (np.random.default_rng(seed).random((4, 5, 3)) * 255).astype(np.uint8)
    return np.array(Image.fromarray(low).resize((width, height), Image.BICUBIC))


@pytest.fixture
def folder(tmp_path):
    """An ImageFolder root with JPEGs of two sizes and one PNG."""
    for i in range(6):
        size = (60, 45) if i % 2 else (50, 64)
        path = tmp_path / "train" / f"c{i % 2}" / f"{i}.{'png' if i == 5 else 'jpg'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_smooth_image(i, size[1], size[0])).save(path)
    return tmp_path


def test_decode_equals_pil_and_names_a_corrupt_file(folder):
    for path in sorted((folder / "train").rglob("*.*")):
        assert torch.equal(decode_rgb(path), TF.pil_to_tensor(load_rgb(path)))
    bad = folder / "train" / "c0" / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(UnreadableImage, match="bad.jpg"):
        decode_rgb(bad)


def _reference_view(image: torch.Tensor, r: ViewRecipe) -> torch.Tensor:
    """The v2 pipeline's draws (make_params, rand(1) gates, in order) applied with the float functional ops."""
    box = v2.RandomResizedCrop(r.size, scale=(r.min_scale, 1.0)).make_params([image])
    x = TF.resized_crop(image, **box, size=[r.size, r.size], antialias=True).float() / 255
    if torch.rand(1) < 0.5:
        x = TF.horizontal_flip(x)
    if torch.rand(1) < r.jitter_p:
        p = v2.ColorJitter(r.brightness, r.contrast, r.saturation, r.hue).make_params([])
        ops = [(TF.adjust_brightness, p["brightness_factor"]), (TF.adjust_contrast, p["contrast_factor"]),
               (TF.adjust_saturation, p["saturation_factor"]), (TF.adjust_hue, p["hue_factor"])]
        for i in p["fn_idx"].tolist():
            x = ops[i][0](x, ops[i][1])
    if torch.rand(1) < r.gray_p:
        x = TF.rgb_to_grayscale(x, num_output_channels=3)
    if r.blur_p > 0 and torch.rand(1) < r.blur_p:
        sigma = torch.empty(1).uniform_(*BLUR_SIGMA).item()
        x = TF.gaussian_blur(x, [r.blur_kernel] * 2, [sigma, sigma])
    if r.solarize_p > 0 and torch.rand(1) < r.solarize_p:
        x = torch.where(x >= 128 / 255, 1 - x, x)
    return TF.normalize(x, IMAGENET_MEAN, IMAGENET_STD)


@pytest.mark.parametrize("recipe", [*view_recipes("byol", 24), ViewRecipe(24, blur_p=0.5, solarize_p=0.5)])
def test_tensor_view_equals_functional_ops_with_v2_draws(recipe):
    image = torch.from_numpy(_smooth_image(1)).permute(2, 0, 1).contiguous()
    view = TensorView(recipe)
    for seed in range(12):
        torch.manual_seed(seed)
        ours, after_ours = view(image), torch.rand(1)
        torch.manual_seed(seed)
        ref, after_ref = _reference_view(image, recipe), torch.rand(1)
        torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)
        assert after_ours == after_ref  # the same number of draws


def test_tensor_view_draws_what_the_v2_pipeline_draws():
    """Against the real v2 pipeline on uint8 (which truncates to uint8 after every colour op)."""
    image = torch.from_numpy(_smooth_image(2)).permute(2, 0, 1).contiguous()
    for recipe in view_recipes("byol", 24):
        for seed in range(12):
            torch.manual_seed(seed)
            ours = TensorView(recipe)(image)
            torch.manual_seed(seed)
            theirs = view_transform(recipe)(image)
            # v2's truncation to uint8 after each colour op shifts pixels by a few 1/255 (0.02-0.04
            # after normalising); a different crop, flip, op order or factor moves them by far more.
            assert (ours - theirs).abs().mean() < 0.08, seed


# The second recipe greys every sample, then blurs and solarizes only some (partial writes after a full op).
@pytest.mark.parametrize("recipe", [ViewRecipe(16, blur_p=0.5, solarize_p=0.5),
                                    ViewRecipe(16, gray_p=1.0, blur_p=0.5, solarize_p=0.5)])
def test_batched_cropped_views_equal_functional_ops_per_sample(recipe):
    n = 24
    crops = torch.from_numpy(np.stack([_smooth_image(i, 16, 16) for i in range(n)])).permute(0, 3, 1, 2).contiguous()
    got = augment_cropped(crops, recipe, torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(5)  # the draws of augment_cropped, in its order
    flip = torch.rand(n, generator=gen) < 0.5
    ranges = [(0.6, 1.4), (0.6, 1.4), (0.8, 1.2), (-0.1, 0.1)]
    factors = [torch.empty(n).uniform_(lo, hi, generator=gen) for lo, hi in ranges]
    order = torch.argsort(torch.rand(n, 4, generator=gen), dim=1)
    jitter = torch.rand(n, generator=gen) < recipe.jitter_p
    gray = torch.rand(n, generator=gen) < recipe.gray_p
    sigma = torch.empty(n).uniform_(*BLUR_SIGMA, generator=gen)
    blur = torch.rand(n, generator=gen) < recipe.blur_p
    solarize = torch.rand(n, generator=gen) < recipe.solarize_p
    ops = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    assert 0 < int(jitter.sum()) < n and 0 < int(blur.sum()) < n and 0 < int(solarize.sum()) < n
    for i in range(n):
        x = crops[i].float() / 255
        x = TF.horizontal_flip(x) if flip[i] else x
        for op_index in order[i].tolist() if jitter[i] else []:
            x = ops[op_index](x, float(factors[op_index][i]))
        x = TF.rgb_to_grayscale(x, num_output_channels=3) if gray[i] else x
        x = TF.gaussian_blur(x, [recipe.blur_kernel] * 2, [float(sigma[i])] * 2) if blur[i] else x
        x = torch.where(x >= 128 / 255, 1 - x, x) if solarize[i] else x
        torch.testing.assert_close(got[i], TF.normalize(x, IMAGENET_MEAN, IMAGENET_STD), atol=1e-4, rtol=0)


def test_two_crops_draw_the_per_image_boxes():
    image = torch.from_numpy(_smooth_image(3)).permute(2, 0, 1).contiguous()
    torch.manual_seed(7)
    pair = TwoCrops("byol", 20)(image)
    torch.manual_seed(7)
    first, second = view_recipes("byol", 20)
    expected = [TensorView(first).crop_uint8(image), TensorView(second).crop_uint8(image)]
    assert pair.dtype == torch.uint8 and pair.shape == (2, 3, 20, 20)
    assert torch.equal(pair, torch.stack(expected))


def test_backends_for_an_on_disk_set_and_resumable_items(folder):
    cfg = DataConfig(name="imagefolder", root=str(folder), image_size=16)
    dataset, make_views = build_training_inputs(cfg, seed=0)  # auto: batch
    assert make_views.cropped
    items = SeededItems(dataset, seed=3)
    crops, _ = items[(1, 4)]
    assert crops.dtype == torch.uint8 and crops.shape == (2, 3, 16, 16)
    assert torch.equal(crops, items[(1, 4)][0]) and not torch.equal(crops, items[(2, 4)][0])
    views = make_views(torch.stack([items[(0, i)][0] for i in range(4)]))
    assert [tuple(v.shape) for v in views] == [(4, 3, 16, 16)] * 2 and views[0].dtype == torch.float32
    per_sample, none = build_training_inputs(DataConfig(name="imagefolder", root=str(folder), image_size=16,
                                                        augment_backend="per-sample"), seed=0)
    first, second = SeededItems(per_sample, seed=3)[(1, 4)][0]
    assert none is None and first.shape == second.shape == (3, 16, 16) and first.dtype == torch.float32
    # Evaluation builds its own dataset object and keeps reading PIL images.
    assert build_dataset("imagefolder", str(folder), "train").loader is load_rgb


def test_embedded_sets_stay_in_memory():
    dataset, make_views = build_training_inputs(DataConfig(name="digits"), seed=0)
    assert not make_views.cropped and dataset.images.dtype == torch.uint8 and dataset.images.ndim == 4


def test_benchmark_quick_mode_prints_ratios():
    spec = importlib.util.spec_from_file_location("bench_data_path", REPO / "benchmarks" / "bench_data_path.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = io.StringIO()
    with redirect_stdout(out):
        bench.main(["--quick"])
    text = out.getvalue()
    assert f"cpu capability {torch.backends.cpu.get_cpu_capability()}" in text
    ratios = [float(m) for m in re.findall(r"ratio to official\s+([0-9.]+)", text)]
    assert len(ratios) == 6 and ratios[0] == 1.0 and all(r > 0 for r in ratios)


class _Killed(Exception):
    """Stands for a kill at the start of an iteration (nothing after it runs or is saved)."""


def _pretrain(folder, out, backend: str, stop_at: int | None = None):
    from mec_eval.config import PretrainConfig
    from mec_eval.pretrain.main import pretrain
    from mec_eval.training import engine

    cfg = PretrainConfig()
    cfg.data = DataConfig(name="imagefolder", root=str(folder), image_size=16, augment_backend=backend)
    cfg.model.proj_hidden = cfg.model.proj_dim = 16
    cfg.model.pred_hidden = 8
    cfg.optim.epochs, cfg.optim.batch_size, cfg.optim.warmup_epochs = 2, 4, 0
    cfg.run.device, cfg.run.save_state_every, cfg.run.log_every = "cpu", 2, 0
    original = engine.TrainingEngine._iteration

    def stopping(self, model, optimizer, scaler, flag, iteration, batch):
        if iteration == stop_at:
            raise _Killed
        return original(self, model, optimizer, scaler, flag, iteration, batch)

    engine.TrainingEngine._iteration = stopping
    try:
        pretrain(cfg, out, quiet=True)
    except _Killed:
        pass
    finally:
        engine.TrainingEngine._iteration = original
    return torch.load(out / "last.pt", weights_only=True)


@pytest.mark.parametrize("backend", ["batch", "per-sample"])
def test_on_disk_pretraining_resumes_bit_identical(folder, tmp_path, backend):
    for i in range(6, 12):  # 12 images, batch 4: 3 iterations per epoch, 6 in all, last.pt every 2
        Image.fromarray(_smooth_image(i)).save(folder / "train" / f"c{i % 2}" / f"{i}.jpg")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same reduction order in both runs
    try:
        whole = _pretrain(folder, tmp_path / "whole", backend)
        killed = _pretrain(folder, tmp_path / "resumed", backend, stop_at=5)  # mid-epoch 2
        resumed = _pretrain(folder, tmp_path / "resumed", backend)
    finally:
        torch.set_num_threads(threads)
    assert killed["meta"]["iteration"] == 4  # saved before the kill: the re-run resumes mid-epoch
    assert whole["meta"]["iteration"] == resumed["meta"]["iteration"] == 6
    for key, value in whole["backbone"].items():
        assert torch.equal(value, resumed["backbone"][key]), key
