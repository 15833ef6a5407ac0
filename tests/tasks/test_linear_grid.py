"""The one-pass grid of linear-probe heads: each head ends exactly where a separate run would."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mec_eval.cli import main
from mec_eval.data.subsets import holdout_split
from mec_eval.tasks import run_task
from mec_eval.tasks.configs import LinearGridParams
from mec_eval.tasks.linear_grid import GridPoint, HeadGrid, grid_points, select_head
from mec_eval.tasks.training import classification_loss
from mec_eval.utils import UserError

CKPT = "random:resnet_tiny"
BASE = ["data.name=digits", "data.image_size=16", "optim.epochs=2", "optim.batch_size=128", "grid.val_fraction=0.25"]


def _run(tmp_path: Path, name: str, lrs: list[float], heads=("bn",)) -> tuple[dict, Path]:
    overrides = [*BASE, f"grid.base_lrs=[{','.join(map(str, lrs))}]", f"grid.heads=[{','.join(heads)}]"]
    outcome = run_task("linear", CKPT, tmp_path / name, overrides, quiet=True)
    return outcome.result, outcome.path.parent


def _trained(run_dir: Path) -> dict:
    """The heads' weights saved in the run's state.pt, keyed ``<head index>.<parameter>``."""
    model = torch.load(run_dir / "state.pt", weights_only=True)["model"]
    return {key.split("heads.", 1)[1]: value for key, value in model.items()}


def test_each_head_of_a_grid_ends_as_its_separate_run(tmp_path, validate_result):
    grid, grid_dir = _run(tmp_path, "grid", [0.05, 2.0])
    alone = [_run(tmp_path, f"alone{i}", [lr]) for i, lr in enumerate([0.05, 2.0])]
    validate_result(grid)
    assert run_task("linear", CKPT, tmp_path / "grid", [*BASE, "grid.base_lrs=[0.05,2.0]", "grid.heads=[bn]"],
                    quiet=True).skipped
    together = _trained(grid_dir)
    for i, (result, run_dir) in enumerate(alone):
        single = _trained(run_dir)
        assert set(single) and all(key.startswith("0.") for key in single)
        for key, value in single.items():
            torch.testing.assert_close(together[f"{i}.{key[2:]}"], value, rtol=1e-5, atol=1e-6)
        assert grid["extra"]["grid"][i]["val_top1"] == pytest.approx(result["extra"]["grid"][0]["val_top1"], abs=1e-9)
    # The two lrs train visibly different heads, so the check above can fail.
    assert not torch.allclose(together["0.1.weight"], together["1.1.weight"])


def test_the_selected_head_is_the_best_on_held_out_training_images(tmp_path):
    result, _ = _run(tmp_path, "sel", [0.001, 0.5, 4.0], heads=("bn", "linear"))
    table = result["extra"]["grid"]
    assert [(row["head"], row["base_lr"]) for row in table] == [
        ("bn", 0.001), ("bn", 0.5), ("bn", 4.0), ("linear", 0.001), ("linear", 0.5), ("linear", 4.0)]
    best = int(np.argmax([row["val_top1"] for row in table]))
    assert result["extra"]["selected"] == {"head": table[best]["head"], "base_lr": table[best]["base_lr"],
                                           "lr": table[best]["lr"]}
    assert result["scale"]["base_lr"] == table[best]["base_lr"]
    assert result["extra"]["n_train"] + result["extra"]["n_val"] == 1257  # the digits training split
    assert result["extra"]["n_test"] == 540
    # lr = base lr x effective batch / 256 for each head (main_lincls.py's rule, one group per head)
    assert table[1]["lr"] == pytest.approx(0.5 * result["extra"]["batch_size"] / 256)


def test_held_out_part_is_ssl_transfer_holdout_and_disjoint():
    fit, held = holdout_split(100, 0.25, 3)
    assert len(held) == 25 and not set(fit) & set(held) and set(fit) | set(held) == set(range(100))


def test_stacked_logits_loss_is_the_sum_of_each_heads_loss():
    logits, targets = torch.randn(8, 3, 5), torch.randint(0, 5, (8,))
    expected = sum(F.cross_entropy(logits[:, i], targets) for i in range(3))
    torch.testing.assert_close(classification_loss(logits, targets, False), expected)


def test_heads_start_as_a_separate_run_initialises_its_one_head():
    points = [GridPoint("bn", 0.1), GridPoint("bn", 1.0), GridPoint("linear", 0.1)]
    grid = HeadGrid(points, 16, 4, seed=7)
    torch.manual_seed(7)
    reference = torch.nn.Linear(16, 4)
    torch.nn.init.normal_(reference.weight, std=0.01)
    torch.testing.assert_close(grid.heads[0][1].weight, reference.weight)
    torch.testing.assert_close(grid.heads[2].weight, reference.weight)
    assert grid(torch.randn(6, 16)).shape == (6, 3, 4)
    groups = grid.param_groups(512, "linear")
    assert [g["lr"] for g in groups] == pytest.approx([0.2, 2.0, 0.2])


def test_grid_points_and_selection():
    points = grid_points(LinearGridParams(base_lrs=[0.1, 1.0], heads=["linear", "bn"]), 0.03)
    assert [p.label for p in points] == ["linear@0.1", "linear@1", "bn@0.1", "bn@1"]
    assert [p.label for p in grid_points(LinearGridParams(heads=["bn", "linear"]), 0.03)] == ["bn@0.03", "linear@0.03"]
    with pytest.raises(UserError, match="repeat a head"):
        grid_points(LinearGridParams(base_lrs=[0.1, 0.1]), 0.03)
    assert select_head([50.0, 70.0, 70.0, 10.0]) == 1  # ties go to the earlier head


@pytest.mark.parametrize("override, message", [
    ("grid.base_lrs=[-1]", "grid.base_lrs"), ("grid.heads=[mlp]", "grid.heads"), ("grid.heads=[]", "grid.heads"),
    ("grid.val_fraction=1.5", "grid.val_fraction"), ("grid.base_lrs=fast", "grid.base_lrs"),
    ("grid.lrs=[0.1]", "grid.lrs"),
])
def test_bad_grid_settings_exit_2_in_one_line_before_torch_work(tmp_path, capsys, override, message):
    code = main(["run", "--task", "linear", "--ckpt", CKPT, "--out", str(tmp_path / "runs"), "data.name=digits",
                 override])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_a_hold_out_too_small_is_one_line(tmp_path):
    with pytest.raises(UserError, match="grid.val_fraction"):
        run_task("linear", CKPT, tmp_path, [*BASE[:-1], "grid.val_fraction=0.0001", "grid.base_lrs=[0.1]"],
                 quiet=True)
