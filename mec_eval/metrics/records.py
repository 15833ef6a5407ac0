"""Per-image records (JSON objects) carried through the evaluator protocol's tensor columns.

Detection outputs are ragged (a varying number of boxes per image, RLE strings for masks), while
:class:`~mec_eval.metrics.evaluator.DatasetEvaluator` keeps and gathers tensors with one row each.
Here a row is one byte of newline-terminated JSON lines: a batch of records becomes one uint8
column, batches and processes concatenate to the whole dataset's lines in order, and the base's
one cross-process gather stays the only one. JSON keeps Python floats exactly (``repr`` round trip).
"""
from __future__ import annotations

import json

import numpy as np
import torch


def encode_records(records: list[dict]) -> torch.Tensor:
    """``records`` as one uint8 column: UTF-8 JSON, one record a line."""
    text = "".join(json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n" for record in records)
    return torch.from_numpy(np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy())


def decode_records(column: torch.Tensor) -> list[dict]:
    """The records of a column made by :func:`encode_records` (concatenated in any number of pieces)."""
    text = column.numpy().tobytes().decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line]
