"""Registry of task adapters (the YAML specs under ``tasks/`` name one of these)."""
from mec_eval.registry import Registry
from mec_eval.tasks.knn import KNNTask
from mec_eval.tasks.linear import LinearTask
from mec_eval.tasks.linear_fast import LinearFastTask
from mec_eval.tasks.semi import SemiTask
from mec_eval.tasks.transfer import TransferLinearTask
from mec_eval.tasks.transfer_finetune import TransferFinetuneTask

TASKS: Registry = Registry("task adapter")
TASKS.register("knn", help="weighted cosine kNN on frozen features (DINO eval_knn.py)")(KNNTask)
TASKS.register("linear", help="frozen backbone + BN/linear head, LARS on augmented crops (MEC main_lincls.py)")(LinearTask)
TASKS.register("linear-fast", help="cached features + L-BFGS multinomial logistic regression in torch")(LinearFastTask)
TASKS.register("semi", help="full fine-tuning on a labelled subset (Barlow Twins evaluate.py)")(SemiTask)
TASKS.register("transfer-linear", help="ssl-transfer linear.py: sklearn L-BFGS logistic regression, C on val")(TransferLinearTask)
TASKS.register("transfer-finetune", help="ssl-transfer finetune.py: SGD Nesterov 5000 steps, lr x wd grid")(TransferFinetuneTask)
