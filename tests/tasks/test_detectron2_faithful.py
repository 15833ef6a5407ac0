"""The engine's R50-C4 (mec_eval.models.rcnn_c4) against detectron2's GeneralizedRCNN with the same weights.

One narrow ResNet-50 (torchvision Bottleneck blocks [3, 4, 6, 3], width_per_group 16, which
detectron2 builds as DEPTH 50 / WIDTH_PER_GROUP 16) with random weights and random BN statistics
becomes the engine's detector and, through ``to_detectron2_names``, detectron2's model built from
the backend's own config (``Res5ROIHeadsExtraNorm``, STRIDE_IN_1X1 False, SSL mean / std, RGB).
Tolerances (fp32 on CPU, the two compute the same operations in other orders): features and
logits 1e-4 relative, boxes 1e-3 px, scores and 14x14 mask probabilities 1e-5, losses 1e-5
relative, gradients 1e-3 relative (the prediction layers'; the trunk's are not compared, see the training
test); full-image soft masks 0.01 (detectron2 rounds them to 1/255) and the 0.5-thresholded masks equal.
"""
from __future__ import annotations

import pytest
import torch
from torchvision.models.resnet import Bottleneck, ResNet

pytest.importorskip("detectron2", reason="detectron2 is not installed: build it from source with FORCE_CUDA=0 pip "
                                         "install --no-build-isolation 'git+https://github.com/facebookresearch/"
                                         "detectron2.git' to run the faithfulness test")

from detectron2.modeling import build_model  # noqa: E402
from detectron2.structures import BitMasks, Boxes, Instances  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

from mec_eval.models.rcnn_c4 import RCNNC4, RpnSettings, to_detectron2_names  # noqa: E402
from mec_eval.models.rcnn_heads import RoiSettings  # noqa: E402
from mec_eval.tasks.detectron2_backend import build_d2_config, register_extra_norm_heads  # noqa: E402
from mec_eval.tasks.detection_configs import DetectionConfig, DetectionModelConfig  # noqa: E402

pytestmark = pytest.mark.slow  # two R50-C4 detectors on CPU: about 10-40 s a test on a busy 2-core machine
K = 3
SIZES = [(128, 160), (112, 128)]  # two sizes: padding to 32 differs per image
ANCHORS, RATIOS = (16, 32, 64), (0.5, 1.0, 2.0)
RPN = dict(rpn_batch_per_image=64, rpn_pre_nms_train=600, rpn_pre_nms_test=400, rpn_post_nms_train=48,
           rpn_post_nms_test=24, roi_batch_per_image=32)


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Every parameter and BN statistic random (so no layer is an identity), reproducibly."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif name.endswith(("running_mean", ".bias")):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif p.ndim == 1:  # BN weight
                p.copy_(torch.rand(p.shape, generator=g) * 0.5 + 0.5)
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 / fan_in) ** 0.5)


def build_pair() -> tuple[RCNNC4, torch.nn.Module]:
    """(engine detector, detectron2 GeneralizedRCNN) holding the same random weights."""
    resnet = ResNet(Bottleneck, [3, 4, 6, 3], width_per_group=16)
    rpn = RpnSettings(ANCHORS, RATIOS, batch_size_per_image=RPN["rpn_batch_per_image"],
                      pre_nms_topk_train=RPN["rpn_pre_nms_train"], pre_nms_topk_test=RPN["rpn_pre_nms_test"],
                      post_nms_topk_train=RPN["rpn_post_nms_train"], post_nms_topk_test=RPN["rpn_post_nms_test"])
    engine = RCNNC4(resnet, K, mask_on=True, rpn=rpn, roi=RoiSettings(batch_size_per_image=RPN["roi_batch_per_image"]))
    _randomise(engine, 0)
    cfg = DetectionConfig(protocol="cpu-small", model=DetectionModelConfig(
        norm="bn", mask_on=True, anchor_sizes=list(ANCHORS), aspect_ratios=list(RATIOS), **RPN))
    register_extra_norm_heads()
    d2cfg = build_d2_config(cfg, K, "", "/nonexistent", ("unused",), ("unused",)).clone()
    d2cfg.defrost()
    d2cfg.MODEL.RESNETS.WIDTH_PER_GROUP = 16
    d2cfg.MODEL.DEVICE = "cpu"
    d2 = build_model(d2cfg)
    missing, unexpected = d2.load_state_dict(to_detectron2_names(engine.state_dict()), strict=True)
    assert not missing and not unexpected
    return engine, d2


@pytest.fixture(scope="module")
def pair():
    return build_pair()


def _images(seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for h, w in SIZES:  # smooth random colours plus a few bright rectangles: varied features and scores
        base = torch.nn.functional.interpolate(torch.rand(1, 3, h // 8, w // 8, generator=g), (h, w),
                                               mode="bilinear")[0]
        for _ in range(3):
            y, x = int(torch.randint(0, h - 40, (), generator=g)), int(torch.randint(0, w - 40, (), generator=g))
            base[:, y:y + 32, x:x + 36] = torch.rand(3, 1, 1, generator=g)
        out.append((base * 255).round() / 255)  # 8-bit values, as decoded images are
    return out


def _d2_inputs(images: list[torch.Tensor]) -> list[dict]:
    return [{"image": im * 255.0, "height": im.shape[1], "width": im.shape[2]} for im in images]


def _targets(images: list[torch.Tensor]) -> list[dict]:
    g = torch.Generator().manual_seed(2)
    out = []
    for im in images:
        h, w = im.shape[1:]
        boxes, masks = [], torch.zeros(3, h, w, dtype=torch.uint8)
        for i in range(3):
            x0, y0 = float(torch.randint(0, w - 50, (), generator=g)), float(torch.randint(0, h - 50, (), generator=g))
            bw, bh = float(torch.randint(20, 48, (), generator=g)), float(torch.randint(20, 48, (), generator=g))
            boxes.append([x0, y0, x0 + bw, y0 + bh])
            masks[i, int(y0):int(y0 + bh), int(x0):int(x0 + bw * 0.7)] = 1  # not the whole box
        out.append({"boxes": torch.tensor(boxes), "labels": torch.tensor([1, 2, 3]), "masks": masks})
    return out


def _d2_train_inputs(images: list[torch.Tensor], targets: list[dict]) -> list[dict]:
    inputs = _d2_inputs(images)
    for item, t, im in zip(inputs, targets, images):
        inst = Instances(tuple(im.shape[1:]))
        inst.gt_boxes, inst.gt_classes = Boxes(t["boxes"]), t["labels"] - 1  # detectron2: classes 0..K-1
        inst.gt_masks = BitMasks(t["masks"].bool())
        item["instances"] = inst
    return inputs


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float) -> bool:
    return bool((a - b).abs().max() <= rtol * max(1.0, float(b.abs().max())))


@torch.no_grad()
def test_backbone_and_rpn_proposals_match(pair):
    engine, d2 = pair
    engine.eval(), d2.eval()
    images = _images()
    batch = engine.preprocess(images)
    d2_images = d2.preprocess_image(_d2_inputs(images))
    assert batch.tensors.shape == d2_images.tensor.shape  # both padded to a multiple of 32
    assert _close(batch.tensors, d2_images.tensor, 1e-5)
    features = engine.backbone(batch.tensors)
    d2_features = d2.backbone(d2_images.tensor)
    assert list(d2_features) == ["res4"]
    assert _close(features, d2_features["res4"], 1e-4)
    proposals, _ = engine.rpn(batch, {"res4": features})
    d2_proposals, _ = d2.proposal_generator(d2_images, d2_features, None)
    for ours, theirs in zip(proposals, d2_proposals):
        assert ours.shape == theirs.proposal_boxes.tensor.shape == (RPN["rpn_post_nms_test"], 4)
        assert (ours - theirs.proposal_boxes.tensor).abs().max() < 1e-3  # same boxes, same order (by score)


@torch.no_grad()
def test_final_boxes_scores_and_mask_probabilities_match(pair):
    engine, d2 = pair
    engine.eval(), d2.eval()
    images = _images()
    batch = engine.preprocess(images)
    features = engine.backbone(batch.tensors)
    proposals, _ = engine.rpn(batch, {"res4": features})
    ours = engine.roi_heads(features, proposals, batch.image_sizes)  # before pasting: 14x14 mask probabilities
    theirs = d2.inference(_d2_inputs(images), do_postprocess=False)
    for o, t in zip(ours, theirs):
        assert len(o["boxes"]) == len(t) > 10
        assert (o["boxes"] - t.pred_boxes.tensor).abs().max() < 1e-3
        assert (o["scores"] - t.scores).abs().max() < 1e-5
        assert torch.equal(o["classes"], t.pred_classes)
        assert o["mask_probs"].shape == t.pred_masks.shape
        assert (o["mask_probs"] - t.pred_masks).abs().max() < 1e-5


@torch.no_grad()
def test_postprocessed_outputs_match(pair):
    """``model(images)`` end to end (boxes in the output size, clipped), as the evaluators receive them."""
    engine, d2 = pair
    engine.eval(), d2.eval()
    images = _images()
    for o, t in zip(engine(images), d2(_d2_inputs(images))):
        inst = t["instances"]
        assert (o["boxes"] - inst.pred_boxes.tensor).abs().max() < 1e-3
        assert (o["scores"] - inst.scores).abs().max() < 1e-5
        assert torch.equal(o["labels"] - 1, inst.pred_classes)  # dataset ids 1..K vs detectron2's 0..K-1
        assert o["masks"].shape[1:] == (1, *inst.image_size) and inst.pred_masks.shape[1:] == inst.image_size
        assert torch.equal(o["masks"][:, 0] >= 0.5, inst.pred_masks)  # MASK threshold 0.5, as the evaluators apply


@torch.no_grad()
def test_pasted_masks_as_detectron2(pair):
    """The full-image soft masks equal detectron2's paste of the same (already equal) 14x14 probabilities."""
    from detectron2.layers.mask_ops import paste_masks_in_image

    engine, d2 = pair
    engine.eval(), d2.eval()
    images = _images()
    batch = engine.preprocess(images)
    features = engine.backbone(batch.tensors)
    proposals, _ = engine.rpn(batch, {"res4": features})
    detections = engine.roi_heads(features, proposals, batch.image_sizes)
    for out, det, image in zip(engine(images), detections, images):
        theirs = paste_masks_in_image(det["mask_probs"][:, 0], det["boxes"], tuple(image.shape[1:]), threshold=-1)
        assert (out["masks"][:, 0] - theirs.float() / 255).abs().max() < 0.01  # detectron2 rounds to 1/255


def test_training_losses_match_for_the_same_samples(pair):
    """Both samplers draw ``torch.randperm`` over the same candidate lists in the same order (RPN per image,
    then ROIs per image), so one seed gives both the same anchors and ROIs: the losses must be equal."""
    engine, d2 = pair
    engine.train(), d2.train()
    images = _images(3)
    targets = _targets(images)
    torch.manual_seed(0)
    ours = engine(images, targets)
    torch.manual_seed(0)
    with EventStorage():  # detectron2's training forward logs sampling statistics there
        theirs = d2(_d2_train_inputs(images, targets))
    assert set(ours) == set(theirs) == {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "loss_mask"}
    for name in ours:
        assert abs(float(ours[name]) - float(theirs[name])) <= 1e-5 * max(1.0, abs(float(theirs[name]))), name
    # and the gradients of the prediction layers (RPN head, box predictor, mask predictor). The trunk's are not
    # compared: in this random network they move by ~15 % when the input moves by 1e-6 (ReLU gates and small-batch
    # BN near their kinks), so two correct implementations differ there by as much.
    sum(ours.values()).backward()
    sum(theirs.values()).backward()
    d2_params = dict(d2.named_parameters())
    compared = 0
    for d2_name, name in to_detectron2_names({n: n for n, _ in engine.named_parameters()}).items():
        if name.startswith(("rpn.head.", "roi_heads.box_predictor.", "roi_heads.mask_head.predictor.")):
            assert _close(dict(engine.named_parameters())[name].grad, d2_params[d2_name].grad, 1e-3), name
            compared += 1
    assert compared == 12  # rpn conv, objectness, deltas; cls_score, bbox_pred; mask predictor (weight + bias)
