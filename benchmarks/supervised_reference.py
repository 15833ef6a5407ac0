"""A supervised reference checkpoint on the embedded shapes set, for the pre-trained-vs-random checks.

Trains ``resnet_tiny`` with labels (cross-entropy; SGD with Nesterov momentum and a cosine schedule; random
32-px crops of the 4-px reflect-padded image and horizontal flips, the usual CIFAR recipe) on the 32-px
``shapes`` train split, and saves the backbone as a canonical ``mec-eval/1`` checkpoint with
``meta.method = "supervised"``. The detection and video tasks can then run from it:

    python benchmarks/supervised_reference.py --out /work/ckpts/shapes-supervised.pt   # 40 epochs, ~17 min, 2 cores
    python benchmarks/bench_detection_pretrain.py --ckpt /work/ckpts/shapes-supervised.pt

Why it exists: no self-supervised recipe learns the shapes on a CPU yet (10 epochs of MEC on ``shapes`` leave
kNN at chance). A checkpoint that does know them tells whether the cpu-small schedules can show a pre-training
gap at all. It is a reference, not a protocol of the MEC paper. It prints the held-out accuracy after every
epoch (chance is 10 %; 40 epochs reach about 26 %, because the set is cluttered on purpose).
"""
from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mec_eval.checkpoints.canonical import make_canonical, save_canonical
from mec_eval.checkpoints.encoder import check_output_file
from mec_eval.cli import OneLineParser
from mec_eval.data.shapes import DEFAULT_SIZES, KINDS, ShapesDataset
from mec_eval.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from mec_eval.models.backbones import build_backbone
from mec_eval.pretrain.inputs import materialise
from mec_eval.training.schedule import LRSchedule
from mec_eval.utils import UserError

ARCH = "resnet_tiny"
IMAGE_SIZE = 32
PAD = 4
MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)  # the statistics every task normalises with
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def render(split: str, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [n, 3, 32, 32] images and int64 [n] labels of the first ``n`` shapes of ``split``."""
    images = materialise(ShapesDataset(split, n=n, image_size=IMAGE_SIZE, seed=seed, cache=False))
    return images.images, torch.tensor(images.targets)


def normalise(images: torch.Tensor) -> torch.Tensor:
    return (images.float() / 255 - MEAN) / STD


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random 32-px crop of each reflect-padded image (its own offset per image), flipped half the time."""
    padded = F.pad(normalise(images), (PAD, PAD, PAD, PAD), mode="reflect")
    offsets = torch.randint(0, 2 * PAD + 1, (len(images), 2), generator=generator).tolist()
    crops = torch.stack([img[:, dy:dy + IMAGE_SIZE, dx:dx + IMAGE_SIZE] for img, (dy, dx) in zip(padded, offsets)])
    flip = torch.rand(len(images), generator=generator) < 0.5
    crops[flip] = crops[flip].flip(3)
    return crops


def accuracy(backbone: torch.nn.Module, head: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    backbone.eval()
    with torch.no_grad():
        predicted = torch.cat([head(backbone(normalise(chunk)).flatten(1)).argmax(1) for chunk in images.split(500)])
    return float((predicted == labels).float().mean())


def train(train_set, test_set, epochs: int, batch: int, lr: float, seed: int, log=print):
    """Train from a seeded random init; returns (backbone, head, [(epoch, last batch loss, test accuracy)])."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    (images, labels), n = train_set, len(train_set[0])
    backbone = build_backbone(ARCH)
    head = torch.nn.Linear(backbone.feature_dim, len(KINDS))
    optimiser = torch.optim.SGD([*backbone.parameters(), *head.parameters()], lr=lr, momentum=0.9,
                                weight_decay=5e-4, nesterov=True)
    per_epoch = n // batch
    schedule, step, history = LRSchedule("cosine", per_epoch, epochs * per_epoch), 0, []
    for epoch in range(epochs):
        backbone.train()
        order = torch.randperm(n, generator=generator)
        for i in range(per_epoch):
            index = order[i * batch:(i + 1) * batch]
            for group in optimiser.param_groups:
                group["lr"] = lr * schedule.factor(step)
            loss = F.cross_entropy(head(backbone(augment(images[index], generator)).flatten(1)), labels[index])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            step += 1
        history.append((epoch + 1, float(loss.detach()), accuracy(backbone, head, *test_set)))
        log(f"epoch {epoch + 1}/{epochs} loss {history[-1][1]:.3f} test accuracy {history[-1][2]:.3f}")
    return backbone, head, history


def save(backbone: torch.nn.Module, path, epochs: int, test_accuracy: float) -> None:
    meta = {"method": "supervised", "epoch": epochs,
            "config": {"data": "shapes", "test_accuracy": round(test_accuracy, 4),
                       "recipe": "benchmarks/supervised_reference.py"}}
    save_canonical(make_canonical(ARCH, backbone.state_dict(), meta=meta), path)


def main() -> None:
    parser = OneLineParser(prog="supervised_reference.py", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the checkpoint file to write (its folder must exist)")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--train-images", type=int, default=DEFAULT_SIZES["train"],
                        help=f"of the shapes train split (at most {DEFAULT_SIZES['train']})")
    parser.add_argument("--test-images", type=int, default=1000, help="held-out images scored after each epoch")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (args.epochs >= 1 and 1 <= args.batch <= args.train_images <= DEFAULT_SIZES["train"]
            and 1 <= args.test_images <= DEFAULT_SIZES["test"] and args.lr > 0 and args.seed >= 0):
        parser.error(f"need epochs >= 1, 1 <= batch <= train-images <= {DEFAULT_SIZES['train']}, "
                     f"1 <= test-images <= {DEFAULT_SIZES['test']}, lr > 0 and seed >= 0")
    out = Path(args.out).expanduser()
    try:
        check_output_file(out, args.force)  # before 17 minutes of training, not after
    except UserError as err:
        sys.stderr.write(f"supervised_reference.py: error: {err}\n")
        sys.exit(2)
    print(f"cpu: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}", flush=True)
    began = time.perf_counter()
    train_set, test_set = render("train", args.train_images), render("test", args.test_images)
    backbone, _, history = train(train_set, test_set, args.epochs, args.batch, args.lr, args.seed,
                                 log=lambda line: print(line, flush=True))
    save(backbone, out, args.epochs, history[-1][2])
    print(f"saved {out} (test accuracy {history[-1][2]:.3f}, {time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
