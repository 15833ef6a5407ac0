"""Registry of task adapters (the YAML specs under ``tasks/`` name one of these)."""
from mec_eval.registry import Registry
from mec_eval.tasks.detection import DetectionTask
from mec_eval.tasks.diagnostics import DiagnosticsTask
from mec_eval.tasks.knn import KNNTask
from mec_eval.tasks.linear import LinearTask
from mec_eval.tasks.linear_fast import LinearFastTask
from mec_eval.tasks.mot import MOTTask
from mec_eval.tasks.mots import MOTSTask
from mec_eval.tasks.posetrack import PoseTrackTask
from mec_eval.tasks.semi import SemiTask
from mec_eval.tasks.sot import SOTTask
from mec_eval.tasks.transfer import TransferLinearTask
from mec_eval.tasks.transfer_finetune import TransferFinetuneTask
from mec_eval.tasks.vos import VOSTask

TASKS: Registry = Registry("task adapter")
TASKS.register("knn", help="weighted cosine kNN on frozen features (DINO eval_knn.py)")(KNNTask)
TASKS.register("linear", help="frozen backbone + BN/linear head, LARS on augmented crops (MEC main_lincls.py)")(LinearTask)
TASKS.register("linear-fast", help="cached features + L-BFGS multinomial logistic regression in torch")(LinearFastTask)
TASKS.register("semi", help="full fine-tuning on a labelled subset (Barlow Twins evaluate.py)")(SemiTask)
TASKS.register("transfer-linear", help="ssl-transfer linear.py: sklearn L-BFGS logistic regression, C on val")(TransferLinearTask)
TASKS.register("transfer-finetune", help="ssl-transfer finetune.py: SGD Nesterov 5000 steps, lr x wd grid")(TransferFinetuneTask)
TASKS.register("diagnostics", help="matrix entropy, effective rank, coding length, MI on held-out features")(DiagnosticsTask)
TASKS.register("detection-voc", help="Faster R-CNN R50-C4 on VOC, MoCo detection protocol (voc07, voc0712)")(DetectionTask)
TASKS.register("detection-coco", help="Mask R-CNN R50-C4 on COCO, MoCo detection protocol (coco)")(DetectionTask)
TASKS.register("mot", help="UniTrack MOT: RoIAlign embeddings, RSM + Kalman association, TrackEval")(MOTTask)
TASKS.register("mots", help="UniTrack MOTS: masked embeddings, mask IoU, TrackEval MOTS")(MOTSTask)
TASKS.register("posetrack", help="UniTrack PoseTrack: pose -> mask embeddings, poseval-style IDF1 / IDs")(PoseTrackTask)
TASKS.register("sot", help="UniTrack SOT on OTB: XCorr and DCF heads on stride-8 features, success AUC")(SOTTask)
TASKS.register("vos", help="UniTrack VOS on DAVIS: label propagation (first + 5 frames, top-10), J&F")(VOSTask)
