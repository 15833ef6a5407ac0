"""LoopOptions.collate_fn: the engine's DataLoader stacks by default and hands a caller's collate the raw items."""
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from mec_eval.config import EvalOptimConfig
from mec_eval.training.engine import LoopOptions, TrainingEngine, make_plan
from mec_eval.training.state import StateFile


class _Sized(Dataset):
    """Item i: an image [1, i + 1, 2] (sizes differ, so default collation cannot stack them) and i."""

    def __len__(self):
        return 6

    def __getitem__(self, index):
        return torch.full((1, index + 1, 2), float(index)), index


class _Same(Dataset):
    def __len__(self):
        return 6

    def __getitem__(self, index):
        return torch.full((2,), float(index)), index


def _engine(tmp_path, data, step, **options):
    model = nn.Linear(2, 1)
    return TrainingEngine(model, list(model.parameters()), step, data,
                          EvalOptimConfig(epochs=1, batch_size=3, base_lr=0.1, lr_scaling="none"),
                          make_plan(len(data), 3, 1, world=1),
                          LoopOptions(seed=0, device=torch.device("cpu"), channels_last=False, quiet=True, **options),
                          StateFile(tmp_path / "state.pt", model.state_dict, model.load_state_dict))


def test_default_collate_stacks_the_batch(tmp_path):
    seen = []

    def step(net, batch):
        x, idx = batch
        seen.append((tuple(x.shape), idx.tolist()))
        return net(x).pow(2).mean()

    assert LoopOptions(seed=0, device=torch.device("cpu")).collate_fn is None
    assert _engine(tmp_path, _Same(), step).fit() == 2
    assert [shape for shape, _ in seen] == [(3, 2), (3, 2)]
    assert sorted(i for _, idx in seen for i in idx) == list(range(6))


def test_list_collate_passes_items_of_different_sizes(tmp_path):
    seen = []

    def step(net, batch):
        assert isinstance(batch, list) and len(batch) == 3
        for image, index in batch:
            assert image.shape == (1, index + 1, 2) and bool((image == index).all())
            seen.append(index)
        return sum(net(image).pow(2).mean() for image, _ in batch)

    assert _engine(tmp_path, _Sized(), step, collate_fn=list).fit() == 2
    assert sorted(seen) == list(range(6))


def test_without_a_collate_ragged_items_fail_in_torch(tmp_path):
    def step(net, batch):
        raise AssertionError("unreachable: default collation cannot stack ragged images")

    with pytest.raises(RuntimeError, match="size"):
        _engine(tmp_path, _Sized(), step).fit()
