"""Evaluation with 2 gloo processes equals evaluation with 1 (issue 8, "Distributed evaluation").

The feature tasks run under ``torchrun --nproc_per_node=2`` and must give exactly the metrics and
bit-identical cached features of one process, one result.json, one copy of the log lines, a skip
on every process the second time, and a clean shared failure (no hang) on bad input.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp

from mec_eval.cli import main

# 33 images per batch: digits' 1,257 training images make 39 batches, 20 for rank 0 and 19 for
# rank 1, so with FLUSH_EVERY = 20 rank 0 records progress once inside its loop and rank 1 once
# after it (the catch-up record), and the last batch (3 images) is rank 0's.
BATCH = 33
COMMON = ["--ckpt", "random:resnet_tiny", "data.name=digits", f"data.batch_size={BATCH}", "run.precision=fp32"]
LINEAR = ["linear.wd_grid=[0.001,0.1]", "linear.max_iter=40"]
TIMEOUT = 180  # seconds; a hang fails the test instead of blocking the suite
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str) -> subprocess.Popen:
    """``torchrun --nproc_per_node=2 -m mec_eval ARGS``, started (``_finish`` waits for it)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", "-m", "mec_eval", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def _finish(job: subprocess.Popen) -> subprocess.CompletedProcess:
    try:
        out, err = job.communicate(timeout=TIMEOUT)
    finally:
        job.kill()
    assert job.returncode == 0, err
    return subprocess.CompletedProcess(job.args, job.returncode, out, err)


def _one_process(*args: str) -> None:
    """The reference: the same command in this process, on one thread as each torchrun worker."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(list(args)) == 0
    finally:
        torch.set_num_threads(threads)


def _result(runs: Path, task: str) -> dict:
    (path,) = (runs / task).glob("*/*/result.json")
    return json.loads(path.read_text())


def _cache(runs: Path) -> dict[str, tuple[bytes, bytes, int]]:
    """Each cache entry's feature and target bytes and recorded progress, by entry name."""
    return {entry.name: (np.load(entry / "features.npy").tobytes(), np.load(entry / "targets.npy").tobytes(),
                         json.loads((entry / "progress.json").read_text())["rows"])
            for entry in sorted((runs / ".cache" / "features").iterdir())}


def test_two_processes_give_the_one_process_features_and_metrics(tmp_path, validate_result):
    one, two = tmp_path / "one", tmp_path / "two"
    _one_process("run", "--task", "knn", "--out", str(one), *COMMON, "--quiet")
    _one_process("run", "--task", "linear-fast", "--out", str(one), *COMMON, *LINEAR, "--quiet")

    knn = _finish(_torchrun("run", "--task", "knn", "--out", str(two), *COMMON))
    before = next((two / "knn").glob("*/*/result.json")).read_bytes()
    # Both at once (2 cores): linear-fast on the features knn cached, and knn again, which must skip.
    fast, again = _torchrun("run", "--task", "linear-fast", "--out", str(two), *COMMON, *LINEAR), \
        _torchrun("run", "--task", "knn", "--out", str(two), *COMMON)
    fast, again = _finish(fast), _finish(again)

    # Rows written by two processes into the shared memory maps are the one-process bytes.
    cache_one, cache_two = _cache(one), _cache(two)
    assert len(cache_one) == 2 and cache_two == cache_one
    assert sorted(rows for _, _, rows in cache_two.values()) == [540, 1257]
    for task in ("knn", "linear-fast"):
        single, double = _result(one, task), _result(two, task)
        validate_result(double)
        assert double["metrics"] == single["metrics"], task
        assert double["scale"] == {"world_size": 2, "per_process_batch": BATCH, "effective_batch": 2 * BATCH}
        assert single["scale"] == {"world_size": 1, "per_process_batch": BATCH, "effective_batch": BATCH}
    assert _result(two, "linear-fast")["extra"] == _result(one, "linear-fast")["extra"]
    # One writer: one result.json and one config.yaml per run, nothing else in the run folders.
    for task in ("knn", "linear-fast"):
        assert sorted(p.name for p in (two / task).glob("*/*/*")) == ["config.yaml", "result.json"]
    assert not (two / ".locks").exists() and not (two / ".cache" / "features" / ".locks").exists()
    # One copy of the log lines (rank 0 alone prints them).
    assert knn.stderr.count("run knn on random-resnet_tiny") == 1
    assert knn.stderr.count(f"event=scale task=knn world_size=2 per_process_batch={BATCH}") == 1
    assert knn.stderr.count("knn random-resnet_tiny: top1=") == 1 and "Traceback" not in knn.stderr
    assert knn.stdout.splitlines() == [str(next((two / "knn").glob("*/*/result.json")))]  # printed once
    assert fast.stderr.count("event=scale task=linear-fast world_size=2") == 1  # printed with every split cached
    assert fast.stderr.count("linear-fast random-resnet_tiny: top1=") == 1
    assert again.stderr.count("skip knn on random-resnet_tiny: finished run") == 1
    assert "event=scale" not in again.stderr and next((two / "knn").glob("*/*/result.json")).read_bytes() == before


def _environment(rank: int, port: int) -> None:
    """What torchrun (or submitit's ``TorchDistributedEnvironment().export()``) sets for one of 2 processes."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2")


def _cli_worker(rank: int, port: int, argv: list[str], log: str) -> None:
    """``mec-eval ARGV`` as process ``rank`` of 2: output to ``log``, exit status = the CLI's."""
    _environment(rank, port)
    torch.set_num_threads(1)
    with open(log, "w") as out:
        sys.stdout = sys.stderr = out
        code = main(argv)
        out.flush()
    os._exit(code)


def test_a_missing_dataset_stops_both_processes_with_one_error_line(tmp_path):
    """Both processes exit 2 with the same one-line error; none waits for the other (forked, as two workers)."""
    runs, missing = tmp_path / "runs", tmp_path / "no-such-imagenet"
    argv = ["run", "--task", "knn", "--ckpt", "random:resnet_tiny", "--out", str(runs), "data.name=imagenet",
            f"data.root={missing}"]
    ctx, port = mp.get_context("fork"), _free_port()
    workers = [ctx.Process(target=_cli_worker, args=(rank, port, argv, str(tmp_path / f"rank{rank}.log")))
               for rank in (0, 1)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=TIMEOUT)
    hung = [worker.pid for worker in workers if worker.is_alive()]
    for worker in workers:
        worker.kill()
    assert not hung, "a process is still waiting"
    assert [worker.exitcode for worker in workers] == [2, 2]
    rank0, rank1 = ((tmp_path / f"rank{rank}.log").read_text() for rank in (0, 1))
    assert len(rank0.splitlines()) == 1 and rank0.startswith(f"mec-eval: error: imagenet: no folder {missing}")
    # The other process raised the same (shared) user error; process 0 alone prints it.
    assert rank1 == ""
    assert not any(p.is_file() for p in runs.rglob("*"))


# -- the coordination primitives, in two forked gloo processes -------------------------------------
def _worker(rank: int, port: int, queue) -> None:
    _environment(rank, port)
    from mec_eval import dist
    from mec_eval.utils import UserError

    try:
        assert dist.init_from_env("cpu") and dist.world_size() == 2
        out = {"batches": [list(r) for r in dist.shard_batches(10, 3)],
               "shared": dist.share_from_main(lambda: f"decided by {dist.rank()}"),
               "gathered": dist.gather_together(lambda: dist.rank() * 10)}

        def fail_on_rank1():
            if rank == 1:
                raise UserError("rank 1 cannot read its shard")
            return "fine"

        # Rank 1 fails in a phase; rank 0 passes it and waits at its next exchange (another kind of
        # call): both must raise the same user error, not block.
        try:
            dist.run_together(fail_on_rank1)
            dist.share_from_main(lambda: "never shared")
            out["error"] = None
        except UserError as err:
            out["error"] = str(err)
        try:  # an OSError on the main process comes back as the same OSError (CLI: one line, exit 2)
            dist.share_from_main(Path("/nonexistent/mec-eval/file").read_text)
        except FileNotFoundError as err:
            out["os_error"] = err.filename
        queue.put((rank, out))
    except Exception:  # noqa: BLE001 -- report to the test rather than crash (the peer would wait for us)
        queue.put((rank, {"crash": traceback.format_exc()}))


def test_a_failure_on_one_process_is_raised_on_every_process():
    ctx = mp.get_context("fork")  # no second import of torch (as tests/training/test_distributed.py)
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(rank, port, queue)) for rank in (0, 1)]
    for proc in procs:
        proc.start()
    results = dict(queue.get(timeout=TIMEOUT) for _ in procs)
    for proc in procs:
        proc.join(timeout=TIMEOUT)
    assert "crash" not in results[0] and "crash" not in results[1], results
    assert results[0]["batches"] == [[0, 1, 2], [6, 7, 8]] and results[1]["batches"] == [[3, 4, 5], [9]]
    assert results[0]["shared"] == results[1]["shared"] == "decided by 0"
    assert results[0]["gathered"] == results[1]["gathered"] == [0, 10]
    assert results[0]["error"] == results[1]["error"] == "rank 1 cannot read its shard"
    assert results[0]["os_error"] == results[1]["os_error"] == "/nonexistent/mec-eval/file"


def _extract_then_die(rank: int, port: int, cache: str) -> None:
    """Extract digits/test with 2 processes, both killed while their sixth batch is written."""
    _environment(rank, port)
    torch.set_num_threads(1)
    from mec_eval import dist
    from mec_eval.checkpoints import load_encoder
    from mec_eval.config import EvalDataConfig, EvalRunConfig
    from mec_eval.tasks import features

    dist.init_from_env("cpu")
    features.FLUSH_EVERY = 2
    real = features.iterate_features

    def dies_after_five_batches(*args, **kwargs):
        for seen, batch in enumerate(real(*args, **kwargs)):
            if seen == 5:
                raise KeyboardInterrupt
            yield batch

    features.iterate_features = dies_after_five_batches
    try:
        features.cached_features(load_encoder("random:resnet_tiny"), EvalDataConfig(name="digits", batch_size=32),
                                 EvalRunConfig(precision="fp32"), "test", Path(cache), quiet=True)
    except KeyboardInterrupt:
        os._exit(0)
    os._exit(1)


def test_an_extraction_killed_in_two_processes_resumes_in_one(tmp_path):
    from mec_eval.checkpoints import load_encoder
    from mec_eval.config import EvalDataConfig, EvalRunConfig
    from mec_eval.tasks.features import cached_features

    ctx, port = mp.get_context("fork"), _free_port()
    workers = [ctx.Process(target=_extract_then_die, args=(rank, port, str(tmp_path / "killed"))) for rank in (0, 1)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=TIMEOUT)
    assert [worker.exitcode for worker in workers] == [0, 0]
    (entry,) = (tmp_path / "killed").iterdir()
    # Each process wrote 5 batches (global batches 0-9) and recorded after its 4th: rows [0, 8 x 32) are done.
    assert json.loads((entry / "progress.json").read_text())["rows"] == 8 * 32 and not (entry / "meta.json").exists()
    encoder, data, run = load_encoder("random:resnet_tiny"), EvalDataConfig(name="digits", batch_size=32), \
        EvalRunConfig(precision="fp32")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        resumed = cached_features(encoder, data, run, "test", tmp_path / "killed", quiet=True)
        whole = cached_features(encoder, data, run, "test", tmp_path / "fresh", quiet=True)
    finally:
        torch.set_num_threads(threads)
    assert resumed.features.tobytes() == whole.features.tobytes()
    np.testing.assert_array_equal(resumed.targets, whole.targets)

