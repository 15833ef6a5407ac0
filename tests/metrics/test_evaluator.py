"""The reset / process / evaluate protocol: chunking, reset, empty evaluation, combining, and the
cross-process gather (two gloo processes on CPU equal one process on the whole dataset, exactly)."""
from __future__ import annotations

import inspect
import traceback
from datetime import timedelta

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mec_eval.metrics import classification
from mec_eval.metrics import DatasetEvaluator, DatasetEvaluators
from mec_eval.metrics.classification import (ClassificationEvaluator, MeanPerClassEvaluator, VOC07MapEvaluator,
                                             evaluator_for)

N = 12
SPLIT = 7  # rank 0 gets rows [:7], rank 1 rows [7:] (uneven on purpose)


def _data():
    """Scores and targets for every evaluator: (logits [N, 6], labels [N], multi-label targets [N, 4])."""
    rng = np.random.default_rng(11)
    logits = torch.tensor(rng.normal(size=(N, 6)), dtype=torch.float32)
    labels = torch.tensor(rng.integers(0, 6, N))
    multi = torch.tensor(rng.choice([1, 0, -1], size=(N, 4), p=[0.35, 0.55, 0.1]))
    multi[0] = 1  # every class has a positive
    return logits, labels, multi


def _evaluators():
    """name -> (fresh evaluator, scores, targets)."""
    logits, labels, multi = _data()
    return {"top": (ClassificationEvaluator(), logits, labels),
            "mean_per_class": (MeanPerClassEvaluator(), logits, labels),
            "voc07": (VOC07MapEvaluator(), logits[:, :4], multi),
            "combined": (DatasetEvaluators([ClassificationEvaluator(topk=(5,)), MeanPerClassEvaluator()]),
                         logits, labels)}


def _feed(evaluator, scores, targets, cuts):
    """reset, then process the rows in chunks ending at ``cuts`` (sorted, last = len), then evaluate."""
    evaluator.reset()
    start = 0
    for end in cuts:
        evaluator.process(scores[start:end], targets[start:end])
        start = end
    return evaluator.evaluate()


@pytest.mark.parametrize("name", ["top", "mean_per_class", "voc07", "combined"])
def test_three_uneven_chunks_equal_one(name):
    evaluator, scores, targets = _evaluators()[name]
    once = _feed(evaluator, scores, targets, [N])
    assert set(once) and all(isinstance(v, float) for v in once.values())
    assert _feed(evaluator, scores, targets, [1, 8, N]) == once
    assert _feed(evaluator, scores, targets, [5, 5, 6, N]) == once  # an empty chunk changes nothing
    # Not vacuous: a part of the data gives other numbers.
    assert _feed(evaluator, scores, targets, [SPLIT]) != once


@pytest.mark.parametrize("name", ["top", "mean_per_class", "voc07", "combined"])
def test_reset_clears_state(name):
    evaluator, scores, targets = _evaluators()[name]
    whole = _feed(evaluator, scores, targets, [N])
    evaluator.reset()
    evaluator.process(scores[:SPLIT], targets[:SPLIT])
    part = evaluator.evaluate()
    assert part != whole
    # evaluate() keeps the state (calling it again gives the same); reset() drops it.
    assert evaluator.evaluate() == part
    evaluator.reset()
    with pytest.raises(ValueError, match="before any process"):
        evaluator.evaluate()
    evaluator.process(scores, targets)
    assert evaluator.evaluate() == whole


@pytest.mark.parametrize("name", ["top", "mean_per_class", "voc07", "combined"])
def test_evaluate_on_nothing_is_a_value_error(name):
    evaluator, scores, targets = _evaluators()[name]
    with pytest.raises(ValueError, match="before any process"):
        evaluator.evaluate()
    evaluator.process(scores[:0], targets[:0])  # only empty batches: still nothing to evaluate
    with pytest.raises(ValueError, match="before any process"):
        evaluator.evaluate()


def test_rows_must_agree_and_hooks_are_required():
    logits, labels, _ = _data()
    for evaluator in (ClassificationEvaluator(), MeanPerClassEvaluator(), VOC07MapEvaluator()):
        with pytest.raises(ValueError, match="number of rows"):
            evaluator.process(logits[:, :4], labels[:3])

    class NoHooks(DatasetEvaluator):
        pass

    with pytest.raises(TypeError, match="_accumulate"):  # abstract hooks: no instance without them
        NoHooks()


def test_a_subclass_needs_only_the_hooks():
    class Count(DatasetEvaluator):
        def _accumulate(self, outputs, targets):
            return (torch.as_tensor(targets),)

        def _compute(self, targets):
            return {"rows": float(len(targets)), "sum": float(targets.sum())}

    counter = Count()
    counter.process(None, torch.arange(3))
    counter.process(None, torch.arange(3, 5))
    assert counter.evaluate() == {"rows": 5.0, "sum": 10.0}


def test_combined_evaluators_merge_and_reject_duplicate_names():
    logits, labels, _ = _data()
    combined = DatasetEvaluators([ClassificationEvaluator(topk=(5,)), MeanPerClassEvaluator()])
    combined.process(logits, labels)
    single_top, single_mpc = ClassificationEvaluator(topk=(5,)), MeanPerClassEvaluator()
    single_top.process(logits, labels)
    single_mpc.process(logits, labels)
    assert combined.evaluate() == {**single_top.evaluate(), **single_mpc.evaluate()}
    clash = DatasetEvaluators([ClassificationEvaluator(), MeanPerClassEvaluator()])  # both report top1
    clash.process(logits, labels)
    with pytest.raises(ValueError, match="'top1'"):
        clash.evaluate()


def test_every_evaluator_implements_the_base_and_leaves_gathering_to_it():
    for metric in classification.EVALUATORS:
        evaluator = evaluator_for(metric)
        assert isinstance(evaluator, DatasetEvaluator)
        for method in ("reset", "process", "evaluate"):  # the public path is the base's
            assert getattr(type(evaluator), method) is getattr(DatasetEvaluator, method)
    assert "distributed" not in inspect.getsource(classification)


# -- two gloo processes ------------------------------------------------------------------------
def _worker(rank: int, init_method: str, queue) -> None:
    # A short timeout so a broken gather fails the test in seconds instead of hanging it.
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=2, timeout=timedelta(seconds=30))
    try:
        try:
            out = _rank_results(rank)
        except Exception:  # noqa: BLE001 -- report it to the test rather than crash (the peer would wait for us)
            out = {"error": traceback.format_exc()}
        queue.put((rank, out))
        dist.barrier()  # tear down together (see tests/objectives/test_mec_distributed.py)
    finally:
        dist.destroy_process_group()


def _rank_results(rank: int) -> dict:
    """What this rank reports: each evaluator on its share of the rows, and the empty cases."""
    out = {}
    rows = slice(0, SPLIT) if rank == 0 else slice(SPLIT, N)
    for name, (evaluator, scores, targets) in _evaluators().items():
        scores, targets = scores[rows], targets[rows]
        # Uneven batches inside each rank too (rank 0: 3 + 4 rows, rank 1: 5).
        cuts = [3, len(targets)] if rank == 0 else [len(targets)]
        out[name] = _feed(evaluator, scores, targets, cuts)
    # Rank 1 processes nothing: its peer's rows are the whole dataset.
    evaluator, scores, targets = _evaluators()["top"]
    evaluator.reset()
    if rank == 0:
        evaluator.process(scores, targets)
    out["rank1_empty"] = evaluator.evaluate()
    # Nobody processes anything: a ValueError on every rank (after the gather, so nobody hangs).
    evaluator.reset()
    try:
        evaluator.evaluate()
        out["all_empty"] = "no error"
    except ValueError as error:
        out["all_empty"] = str(error)
    return out


def test_two_gloo_processes_equal_one_process(tmp_path):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    init_method = f"file://{tmp_path}/pg"
    procs = [ctx.Process(target=_worker, args=(r, init_method, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    for rank in range(2):
        assert "error" not in results[rank], results[rank]["error"]
    assert [p.exitcode for p in procs] == [0, 0]
    for name, (evaluator, scores, targets) in _evaluators().items():
        single = _feed(evaluator, scores, targets, [N])
        rank0_alone = _feed(evaluator, scores, targets, [SPLIT])
        assert rank0_alone != single  # the test would notice a missing gather
        for rank in range(2):
            assert results[rank][name] == single, (name, rank)
    evaluator, scores, targets = _evaluators()["top"]
    for rank in range(2):
        assert results[rank]["rank1_empty"] == _feed(evaluator, scores, targets, [N])
        assert "before any process" in results[rank]["all_empty"]
