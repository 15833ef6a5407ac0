"""The evaluator protocol: ``reset`` / ``process`` / ``evaluate``, after detectron2's ``DatasetEvaluator``.

An evaluator is fed a dataset batch by batch (``process(outputs, targets)``) and then asked for its
metrics (``evaluate() -> dict[str, float]``). Unlike detectron2, where every evaluator gathers for
itself, the base class here does the work every metric shares, in one place:

* ``process`` turns a batch into *columns* through the subclass hook ``_accumulate`` (one CPU tensor
  per column, all with the same number of rows), checks them and keeps them;
* ``evaluate`` concatenates the columns over batches, then over ``torch.distributed`` processes
  (:func:`gather_columns`; rank order, each rank's rows in the order it processed them), and hands
  the whole dataset to the subclass hook ``_compute``.

So a metric depends neither on the batching nor on how the rows were split across processes, and
subclasses never call ``torch.distributed``. Under a process group ``evaluate`` is a collective:
every process must call it, and every process gets the same metrics.

Evaluating nothing is an error: when no process has processed a single row since the last
``reset``, ``evaluate`` raises ``ValueError`` (on every process, after the gather, so no process is
left waiting in a collective). A process that processed nothing while others did is fine.
"""
from __future__ import annotations

import abc

import torch

from mec_eval.dist import is_distributed, world_size

Columns = tuple[torch.Tensor, ...]


def gather_columns(columns: Columns | None) -> list[Columns]:
    """Every process's ``columns`` (``None``: this process has nothing), in rank order, ``None`` dropped.

    One process without a process group: ``[columns]`` (or ``[]``). Under ``torch.distributed``, an
    ``all_gather_object`` of the CPU tensors (exact: they travel pickled), so every rank must call it.
    """
    if not is_distributed() or world_size() == 1:
        return [] if columns is None else [columns]
    import torch.distributed as torch_dist

    parts: list = [None] * world_size()
    torch_dist.all_gather_object(parts, columns)
    return [part for part in parts if part is not None]


class DatasetEvaluator(abc.ABC):
    """Base of every evaluator: accumulate per-batch columns, gather them across processes, compute.

    Public API (do not override in metric subclasses): ``reset()``, ``process(outputs, targets)``,
    ``evaluate() -> dict[str, float]``. Subclasses implement two hooks:

    * ``_accumulate(outputs, targets) -> tuple[Tensor, ...]``: what to keep of one batch, as CPU
      tensors whose first dimension is the batch's rows (e.g. float64 scores and int64 labels);
    * ``_compute(*columns) -> dict[str, float]``: the metrics of the whole dataset, each column
      concatenated over batches and processes.

    ``__init__`` calls ``reset``; a subclass with its own ``__init__`` sets its options first and then
    calls ``super().__init__()``.
    """

    def __init__(self) -> None:
        self.reset()

    # -- public protocol ------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget everything processed so far (start of a new evaluation)."""
        self._batches: list[Columns] = []

    def process(self, outputs, targets) -> None:
        """Keep what ``_accumulate`` extracts from one batch of model ``outputs`` and ``targets``."""
        columns = self._accumulate(outputs, targets)
        if isinstance(columns, torch.Tensor):
            columns = (columns,)
        columns = tuple(columns)
        if not columns or not all(isinstance(c, torch.Tensor) and c.ndim >= 1 for c in columns):
            raise TypeError(f"{type(self).__name__}._accumulate must return tensors with a row dimension")
        rows = {len(c) for c in columns}
        if len(rows) != 1:
            raise ValueError(f"{type(self).__name__}: outputs and targets disagree on the number of rows "
                             f"({', '.join(str(tuple(c.shape)) for c in columns)})")
        if self._batches and len(self._batches[0]) != len(columns):
            raise TypeError(f"{type(self).__name__}._accumulate returned a varying number of columns")
        self._batches.append(tuple(c.detach().cpu() for c in columns))

    def evaluate(self) -> dict[str, float]:
        """Metrics over every row processed by every process since ``reset``; ``ValueError`` if none."""
        local = (tuple(torch.cat(column) for column in zip(*self._batches)) if self._batches else None)
        parts = [part for part in gather_columns(local) if len(part[0])]
        if not parts:
            raise ValueError(f"{type(self).__name__}.evaluate() called before any process() "
                             "(no rows on any process since reset)")
        if len({len(part) for part in parts}) != 1:
            raise ValueError(f"{type(self).__name__}: processes kept different numbers of columns")
        columns = tuple(torch.cat([part[i] for part in parts]) for i in range(len(parts[0])))
        return self._compute(*columns)

    # -- hooks ----------------------------------------------------------------------------------
    @abc.abstractmethod
    def _accumulate(self, outputs, targets) -> Columns:
        """What to keep of one batch: CPU tensors with one row per example."""

    @abc.abstractmethod
    def _compute(self, *columns: torch.Tensor) -> dict[str, float]:
        """The metrics of the whole dataset from its columns (joined over batches and processes)."""


class DatasetEvaluators:
    """Several evaluators fed the same batches; ``evaluate`` merges their metrics into one dict.

    Each member gathers for itself (so under a process group this is a collective too, the members
    in order). Two members returning the same metric name is a ``ValueError``, as in detectron2.
    """

    def __init__(self, evaluators: list[DatasetEvaluator]):
        self._evaluators = list(evaluators)

    @property
    def evaluators(self) -> list[DatasetEvaluator]:
        return list(self._evaluators)

    def reset(self) -> None:
        for evaluator in self._evaluators:
            evaluator.reset()

    def process(self, outputs, targets) -> None:
        for evaluator in self._evaluators:
            evaluator.process(outputs, targets)

    def evaluate(self) -> dict[str, float]:
        results: dict[str, float] = {}
        for evaluator in self._evaluators:
            for name, value in evaluator.evaluate().items():
                if name in results:
                    raise ValueError(f"two evaluators both report {name!r}; combine evaluators with distinct "
                                     "metric names")
                results[name] = value
        return results
