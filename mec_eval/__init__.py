"""mec-eval: pre-train self-supervised encoders with Maximum Entropy Coding and evaluate any checkpoint."""

__version__ = "0.4.0"
