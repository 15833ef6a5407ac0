"""The engine's parts: per-process shares of the seeded order, per-item seeds, the stop flag, the plan,
and a step that returns a dict of losses."""
import json
import os
import signal

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from mec_eval.config import EvalOptimConfig
from mec_eval.log import JsonLogger
from mec_eval.training.engine import LoopOptions, TrainingEngine, make_plan
from mec_eval.training.sampling import EpochBatches, SeededItems, smallest_share
from mec_eval.training.signals import StopFlag
from mec_eval.training.state import StateFile
from mec_eval.utils import UserError


class _Noise(Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, index):
        return index, torch.rand(()).item()


def test_process_shares_make_up_the_one_process_batches_and_resume_mid_epoch():
    whole = list(EpochBatches(10, 4, 3, seed=1, epoch=2))
    shares = [list(EpochBatches(10, 4, 3, seed=1, epoch=2, rank=r, world=2)) for r in range(2)]
    for b, batch in enumerate(whole):
        assert shares[0][b] + shares[1][b] == batch  # contiguous halves, rank 0 first
    assert sorted(i for batch in whole for _, i in batch) == list(range(10))
    assert list(EpochBatches(10, 4, 3, seed=1, epoch=2, start=1)) == whole[1:]  # a resumed epoch
    assert list(EpochBatches(10, 4, 3, seed=1, epoch=3)) != whole  # a new order every epoch


def test_item_randomness_depends_on_seed_epoch_and_index_only():
    items = SeededItems(_Noise(), seed=5)
    forward = [items[(0, i)] for i in range(10)]
    torch.manual_seed(123)  # whatever state the loader process is in
    backward = [items[(0, i)] for i in reversed(range(10))][::-1]
    assert forward == backward
    assert items[(1, 3)] != items[(0, 3)]
    state = torch.random.get_rng_state()
    items[(0, 0)]
    assert torch.equal(torch.random.get_rng_state(), state)  # loading never moves the training RNG


def test_stop_flag_catches_sigterm_and_sigusr1_then_restores_the_handlers():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGUSR1)
    with StopFlag() as flag:
        assert flag.received is None
        os.kill(os.getpid(), signal.SIGUSR1)
        assert flag.received == "SIGUSR1"
        os.kill(os.getpid(), signal.SIGTERM)
        assert flag.received == "SIGTERM"
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGUSR1)) == before


def test_plan_keeps_two_images_per_process_for_batchnorm():
    assert smallest_share(5, 2) == 2 and smallest_share(3, 2) == 1
    assert make_plan(21, 8, 1, world=2).iters_per_epoch == 3   # last batch of 5: shares 3 + 2, kept
    assert make_plan(19, 8, 1, world=2).iters_per_epoch == 2   # last batch of 3: shares 2 + 1, dropped
    assert make_plan(19, 8, 1, world=2, drop_last=True).iters_per_epoch == 2
    assert make_plan(100, 8, 2, world=1, max_iters_per_epoch=3).total_iters == 6
    with pytest.raises(UserError, match="per process"):
        make_plan(100, 3, 1, world=2)
    assert make_plan(7, 8, 1, world=1, drop_last=True).effective_batch == 7  # capped at the split


def test_a_dict_of_losses_is_summed_and_each_term_logged(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    data = TensorDataset(torch.randn(12, 3), torch.randn(12, 1))

    def step(net, batch):
        x, y = batch
        error = net(x) - y
        return {"mse": error.pow(2).mean(), "l1": error.abs().mean()}

    store = StateFile(tmp_path / "state.pt", model.state_dict, model.load_state_dict)
    log = tmp_path / "log.jsonl"
    engine = TrainingEngine(model, list(model.parameters()), step, data,
                            EvalOptimConfig(epochs=2, batch_size=4, base_lr=0.1, lr_scaling="none"),
                            make_plan(12, 4, 2, world=1), LoopOptions(seed=0, device=torch.device("cpu"), log_every=1,
                                                                      channels_last=False, quiet=True),
                            store, JsonLogger(log, quiet=True))
    assert engine.fit() == 6
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["iteration"] for r in records] == list(range(6))
    for r in records:
        assert r["loss"] == pytest.approx(r["mse"] + r["l1"]) and r["l1"] > 0
    assert torch.load(tmp_path / "state.pt", weights_only=True)["iteration"] == 6


def test_logger_records_skip_a_line_torn_by_a_kill(tmp_path):
    logger = JsonLogger(tmp_path / "run" / "log.jsonl", quiet=True)
    assert logger.records() == [] and JsonLogger(None).records() == []  # no file yet / no file at all
    logger.log(event="train_epoch", epoch=1)
    logger.log(event="train_epoch", epoch=2)
    with open(logger.path, "a", encoding="utf-8") as fh:
        fh.write('{"event": "train_epoch", "ep')  # the process died mid-write
    assert [(r["event"], r["epoch"]) for r in logger.records()] == [("train_epoch", 1), ("train_epoch", 2)]
