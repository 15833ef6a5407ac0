"""MAE's masked encoder pass (75 % of the patches dropped) vs the full encoder forward, timed side by side.

MAE runs the encoder on the visible 25 % only, so its cost should be about a quarter of the full
forward (slightly more: the CLS token and the per-patch embedding of all patches). Prints, for one
architecture, the FLOP ratios (torch's FlopCounterMode, exact; independent of machine load) and median
wall times of: encoder forward (full vs masked, no grad), and a training step forward + backward (full
encoder vs the masked encoder + decoder + loss, i.e. one MAE iteration).
Usage: python benchmarks/bench_mae.py [--arch vit_base] [--batch 64] [--repeats 5] [--device auto] [--smoke]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from mec_eval.dist import resolve_device
from mec_eval.models import build_backbone
from mec_eval.models.mae import MaskedAutoencoder, random_masking
from mec_eval.objectives.mae import MAELoss


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up (allocator, kernels)
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="vit_base")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--smoke", action="store_true", help="vit_tiny_p4, batch 16, 2 repeats (CPU check)")
    args = parser.parse_args()
    if args.smoke:
        args.arch, args.batch, args.repeats = "vit_tiny_p4", 16, 2
    device = resolve_device(args.device)
    torch.manual_seed(0)
    # MAE's decoder (512 wide, 8 blocks) for the 224 px models; the CPU configs' 128 x 2 for the 32 px ones.
    decoder = (512, 8, 16) if build_backbone(args.arch).spec.img_size == 224 else (128, 2, 4)
    net = MaskedAutoencoder(build_backbone(args.arch), 0.75, *decoder).to(device)
    encoder, loss = net.backbone, MAELoss()
    size = encoder.spec.img_size
    images = torch.randn(args.batch, 3, size, size, device=device)

    def masked_forward():
        ids = random_masking(args.batch, encoder.num_patches, net.mask_ratio, device).ids_keep
        return encoder.forward_tokens(images, ids)

    def full_step():
        encoder.zero_grad(set_to_none=True)
        encoder(images).square().mean().backward()

    def mae_step():
        net.zero_grad(set_to_none=True)
        sum(loss(net(images)).values()).backward()

    with torch.no_grad():
        flop_ratio = _flops(masked_forward) / _flops(lambda: encoder(images))
        full_ms = _median_ms(lambda: encoder(images), args.repeats, device)
        masked_ms = _median_ms(masked_forward, args.repeats, device)
    step_flop_ratio = _flops(mae_step) / _flops(full_step)  # forward + backward, counted exactly
    full_step_ms = _median_ms(full_step, args.repeats, device)
    mae_step_ms = _median_ms(mae_step, args.repeats, device)
    print(f"{args.arch} {size}px, {encoder.num_patches} patches, mask {net.mask_ratio}, batch {args.batch}, "
          f"device {device}, {torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"encoder forward flop ratio masked/full={flop_ratio:.3f}")
    print(f"encoder forward full={full_ms:.1f} ms masked={masked_ms:.1f} ms ratio={masked_ms / full_ms:.3f}")
    print(f"train step flop ratio mae(encoder+decoder)/full-encoder={step_flop_ratio:.3f}")
    print(f"train step full-encoder={full_step_ms:.1f} ms mae(encoder+decoder)={mae_step_ms:.1f} ms "
          f"ratio={mae_step_ms / full_step_ms:.3f}")


if __name__ == "__main__":
    main()
