"""Metrics and detectron2-style evaluators (reset / process / evaluate); see :mod:`mec_eval.metrics.evaluator`."""
from mec_eval.metrics.evaluator import DatasetEvaluator, DatasetEvaluators

__all__ = ["DatasetEvaluator", "DatasetEvaluators"]
