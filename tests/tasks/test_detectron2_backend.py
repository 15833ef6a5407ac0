"""backend=detectron2: the refusal without detectron2, the generated MoCo config, the metric names, a tiny run."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from mec_eval.cli import main
from mec_eval.tasks import detectron2_backend as backend
from mec_eval.tasks.specs import resolve_task_config
from mec_eval.utils import UserError

HAVE_D2 = importlib.util.find_spec("detectron2") is not None
needs_d2 = pytest.mark.skipif(not HAVE_D2, reason="detectron2 is not installed (FORCE_CUDA=0 pip install "
                                                  "--no-build-isolation 'git+https://github.com/facebookresearch/"
                                                  "detectron2.git' to run these)")
# 2 iterations of R50-C4 (detectron2's ROI head is always a bottleneck res5, so the smallest it builds is R50)
TINY = ["backend=detectron2", "optim.iterations=2", "optim.steps=[1]", "optim.warmup_iters=1", "optim.batch_size=2",
        "optim.save_every=1", "data.shapes_train=4", "data.shapes_test=2", "data.shapes_size=64",
        "data.min_size_train=[64]", "data.min_size_test=64", "data.max_size=96", "model.anchor_sizes=[16,32]",
        "model.rpn_pre_nms_train=200", "model.rpn_pre_nms_test=100", "model.rpn_post_nms_train=16",
        "model.rpn_post_nms_test=16", "model.roi_batch_per_image=16", "model.rpn_batch_per_image=32",
        "run.device=cpu"]


def test_absent_detectron2_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "detectron2", None)  # `import detectron2` raises ImportError
    rc = main(["run", "--task", "voc07-cpu-small", "--ckpt", "random:resnet50", "--out", str(tmp_path / "runs"),
               "--quiet", *TINY, f"data.root={tmp_path / 'data'}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "pip install" in err and "backend=torchvision" in err
    assert not list((tmp_path / "runs").rglob("result.json"))


def test_backend_field_is_checked():
    with pytest.raises(UserError, match="backend"):
        resolve_task_config("voc07", ["backend=detectron3"])
    assert resolve_task_config("voc07", [])[1].backend == "torchvision"


def test_metric_names():
    voc = {"bbox": {"AP": 41.5, "AP50": 70.25, "AP75": 43.0}}
    assert backend.metrics_from_detectron2(voc, coco=False) == ({"AP": 41.5, "AP50": 70.25, "AP75": 43.0}, {})
    coco = {"bbox": {"AP": 1.0, "AP50": 2.0, "AP75": 3.0, "APs": 4.0, "APm": 5.0, "APl": 6.0, "AP-circle": 7.0},
            "segm": {"AP": 8.0, "AP50": 9.0, "AP75": 10.0, "APs": 11.0, "APm": 12.0, "APl": 13.0}}
    metrics, per_class = backend.metrics_from_detectron2(coco, coco=True)
    assert metrics["bbox_APl"] == 6.0 and metrics["segm_AP"] == 8.0 and len(metrics) == 12
    assert per_class == {"bbox_circle": 7.0}


@needs_d2
@pytest.mark.parametrize("processes,norm", [(1, "BN"), (8, "SyncBN")])
def test_generated_config_is_moco_r50_c4(processes, norm):
    """voc07's YAML through the generator: Base-RCNN-C4-BN + pascal_voc_R_50_C4_24k_moco fields (moco 7397dfe)."""
    _, cfg = resolve_task_config("voc07", [])
    c = backend.build_d2_config(cfg, 20, "w.pkl", "/out", ("a",), ("b",), processes)
    assert c.MODEL.RESNETS.NORM == norm and c.MODEL.BACKBONE.FREEZE_AT == 0
    assert c.MODEL.ROI_HEADS.NAME == "Res5ROIHeadsExtraNorm" and c.MODEL.RESNETS.STRIDE_IN_1X1 is False
    assert c.MODEL.RESNETS.OUT_FEATURES == ["res4"] and c.MODEL.RESNETS.DEPTH == 50
    assert c.MODEL.PIXEL_MEAN == [123.675, 116.28, 103.53] and c.MODEL.PIXEL_STD == [58.395, 57.12, 57.375]
    assert c.INPUT.FORMAT == "RGB" and c.INPUT.MIN_SIZE_TRAIN == tuple(range(480, 801, 32))
    assert c.INPUT.MIN_SIZE_TEST == 800 and c.INPUT.MAX_SIZE_TRAIN == 1333
    assert c.MODEL.RPN.PRE_NMS_TOPK_TEST == 6000 and c.MODEL.RPN.POST_NMS_TOPK_TEST == 1000
    assert c.SOLVER.IMS_PER_BATCH == 16 and c.SOLVER.BASE_LR == 0.02 and c.SOLVER.MAX_ITER == 12500
    assert c.SOLVER.STEPS == (9500,) and c.SOLVER.WARMUP_ITERS == 100 and c.SOLVER.WEIGHT_DECAY_NORM == 0.0
    assert c.TEST.PRECISE_BN.ENABLED and c.MODEL.ROI_HEADS.NUM_CLASSES == 20 and not c.MODEL.MASK_ON
    _, coco = resolve_task_config("coco", ["optim.batch_size=8"])
    c = backend.build_d2_config(coco, 80, "w.pkl", "/out", ("a",), ("b",))
    assert c.MODEL.MASK_ON and c.SOLVER.BASE_LR == pytest.approx(0.01)  # linear scaling from 0.02 at 16
    assert c.SOLVER.MAX_ITER == 90000 and c.SOLVER.STEPS == (60000, 80000)


@needs_d2
@pytest.mark.parametrize("ckpt", ["random:resnet_tiny", "random:resnet18"])
def test_a_backbone_other_than_resnet50_is_refused(ckpt, tmp_path, capsys):
    """detectron2's checkpointer would skip every weight of another shape with a warning and train a random R50."""
    rc = main(["run", "--task", "voc07-cpu-small", "--ckpt", ckpt, "--out", str(tmp_path / "runs"), "--quiet",
               *TINY, f"data.root={tmp_path / 'data'}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "ResNet-50" in err and "other shape" in err and "backend=torchvision" in err
    assert not list((tmp_path / "runs").rglob("result.json")) and not list((tmp_path / "runs").rglob("*.pkl"))


@needs_d2
def test_extra_norm_heads_add_a_norm_after_res5():
    from detectron2.modeling import build_model

    _, cfg = resolve_task_config("voc07-cpu-small", ["model.norm=bn"])
    backend.register_extra_norm_heads()
    backend.register_extra_norm_heads()  # idempotent
    model = build_model(backend.build_d2_config(cfg, 3, "", "/out", ("a",), ("b",)))
    norm = model.roi_heads.res5.norm
    assert isinstance(norm, torch.nn.BatchNorm2d) and norm.num_features == 2048


@needs_d2
@pytest.mark.slow
def test_tiny_shapes_run_writes_a_valid_result_and_resumes(tmp_path, validate_result, capsys):
    args = ["run", "--task", "voc07-cpu-small", "--ckpt", "random:resnet50", "--out", str(tmp_path / "runs"),
            "--quiet", *TINY, f"data.root={tmp_path / 'data'}"]
    assert main(args) == 0
    path = next((tmp_path / "runs").rglob("result.json"))
    result = validate_result(path)
    assert set(result["metrics"]) == {"AP", "AP50", "AP75"} and all(0 <= v <= 100 for v in result["metrics"].values())
    assert result["extra"]["backend"] == "detectron2" and result["dataset"] == "shapes-detection"
    out = path.parent / "detectron2"
    assert (out / "model_final.pth").is_file() and (out / "last_checkpoint").read_text().strip() == "model_final.pth"
    assert (out / "backbone.pkl").is_file() and (out / "config.yaml").is_file()
    # the detector it trained converts into the engine's (anchors read from config.yaml)
    capsys.readouterr()
    assert main(["convert", "--ckpt", str(out / "model_final.pth"), "--to", "canonical",
                 "--out", str(tmp_path / "det.pt")]) == 0
    converted = torch.load(tmp_path / "det.pt", weights_only=True)
    assert converted["meta"]["config"]["anchor_sizes"] == [16.0, 32.0]
    # a second run finds the finished training through the checkpointer: no iteration is repeated
    path.unlink()
    before = (out / "metrics.json").read_text().count("\n")
    assert main(args) == 0
    assert json.loads(Path(path).read_text())["metrics"] == result["metrics"]
    assert (out / "metrics.json").read_text().count("\n") == before
