"""Metrics and detectron2-style evaluators (reset / process / evaluate)."""
