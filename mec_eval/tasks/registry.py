"""Registry of task adapters (the YAML specs under ``tasks/`` name one of these)."""
from mec_eval.registry import Registry
from mec_eval.tasks.knn import KNNTask
from mec_eval.tasks.linear_fast import LinearFastTask

TASKS: Registry = Registry("task adapter")
TASKS.register("knn", help="weighted cosine kNN on frozen features (DINO eval_knn.py)")(KNNTask)
TASKS.register("linear-fast", help="cached features + multinomial logistic regression")(LinearFastTask)
