"""Execution: local runs, SLURM job arrays through submitit, and the end-to-end demo."""
