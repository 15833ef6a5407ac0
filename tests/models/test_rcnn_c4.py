"""The R50-C4 engine against detectron2's formulas, computed here independently on tiny inputs."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from mec_eval.models import build_backbone
from mec_eval.models.rcnn_c4 import (
    RCNNC4,
    Detectron2Anchors,
    RpnSettings,
    c4_backbone,
    from_detectron2_names,
    norm_parameters,
    to_detectron2_names,
)
from mec_eval.models.rcnn_heads import LabelMap, RoiSettings, mask_targets, paste_masks

SMALL_RPN = RpnSettings(anchor_sizes=(16, 32, 64), pre_nms_topk_train=500, pre_nms_topk_test=300,
                        post_nms_topk_train=64, post_nms_topk_test=50)


def _model(num_classes=3, mask_on=True, arch="resnet_tiny", roi=None):
    torch.manual_seed(0)
    roi = roi or RoiSettings(batch_size_per_image=32)
    return RCNNC4(build_backbone(arch), num_classes, mask_on, SMALL_RPN, roi, mask_dim=32)


def _batch(mask=True):
    images = [torch.rand(3, 70, 90), torch.rand(3, 64, 80)]
    targets = [{"boxes": torch.tensor([[10.0, 12, 50, 60], [40, 5, 85, 40]]), "labels": torch.tensor([1, 3])},
               {"boxes": torch.tensor([[5.0, 5, 40, 44]]), "labels": torch.tensor([2])}]
    if mask:
        for image, target in zip(images, targets):
            masks = torch.zeros(len(target["boxes"]), *image.shape[1:], dtype=torch.uint8)
            for m, (x1, y1, x2, y2) in zip(masks, target["boxes"].int().tolist()):
                m[y1:y2, x1:x2] = 1
            target["masks"] = masks
    return images, targets


def test_stage_shapes_and_stride():
    model = _model()
    assert model.stride == 16  # resnet_tiny's CIFAR stem gets the ImageNet stem's strides: 2 x 2 x layer2, layer3
    batch = model.preprocess(_batch()[0])
    res4 = model.backbone(batch.tensors)
    assert batch.tensors.shape[-2:] == (96, 96)  # 70 x 90 and 64 x 80 padded to multiples of 32
    assert res4.shape == (2, 128, 96 // 16, 96 // 16)
    assert model.rpn.head.cls_logits.out_channels == 9 and model.rpn.head.bbox_pred.out_channels == 36
    model.eval()
    with torch.no_grad():
        proposals, _ = model.rpn(batch, {"res4": res4})
        assert all(len(p) <= SMALL_RPN.post_nms_topk_test for p in proposals)
        pooled = model.roi_heads.pooler(res4, proposals)
        assert pooled.shape[1:] == (128, 14, 14)
        x = model.roi_heads.res5(pooled)
        assert x.shape[1:] == (256, 7, 7)
        assert model.roi_heads.mask_head(x).shape[1:] == (3, 14, 14)  # C4 masks: 14x14 from 7x7 res5 features


def test_resnet50_c4_is_stride_16_with_1024_channels():
    _trunk, res5, channels, stride = c4_backbone(build_backbone("resnet50"))
    assert (channels, stride) == (1024, 16)
    assert res5[0].conv2.stride == (2, 2) and res5[0].conv1.stride == (1, 1)  # STRIDE_IN_1X1 False


def test_cifar_stem_gets_imagenet_strides_and_keeps_its_weights():
    resnet = build_backbone("resnet_tiny")
    trunk, _res5, channels, stride = c4_backbone(resnet)
    assert (channels, stride) == (128, 16)
    assert resnet.conv1.stride == (1, 1) and isinstance(resnet.maxpool, nn.Identity)  # the checkpoint's net untouched
    assert trunk.conv1.stride == (2, 2) and trunk.conv1.padding == (1, 1)
    assert isinstance(trunk.maxpool, nn.MaxPool2d) and trunk.maxpool.stride == 2 and trunk.maxpool.kernel_size == 3
    assert torch.equal(trunk.conv1.weight, resnet.conv1.weight) and trunk.conv1.weight is not resnet.conv1.weight
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():  # the stem is torchvision's ImageNet stem computation on the same weights
        stem = F.max_pool2d(F.relu(F.batch_norm(F.conv2d(x, resnet.conv1.weight, stride=2, padding=1),
                                                resnet.bn1.running_mean, resnet.bn1.running_var,
                                                resnet.bn1.weight, resnet.bn1.bias)), 3, 2, 1)
        assert torch.allclose(trunk[:4].eval()(x), stem, atol=1e-6)


def test_a_resnet_off_stride_16_is_refused():
    resnet = build_backbone("resnet18")
    resnet.layer3[0].conv1.stride = resnet.layer3[0].downsample[0].stride = (1, 1)  # res4 at 1/8
    with pytest.raises(ValueError, match="stride 16; this ResNet has stride 8"):
        c4_backbone(resnet)


def test_non_resnet_is_refused():
    with pytest.raises(ValueError, match="ResNet"):
        c4_backbone(nn.Sequential(nn.Conv2d(3, 8, 16, 16)))


def test_cell_anchors_follow_detectron2_formula():
    gen = Detectron2Anchors(((32, 64),), ((0.5, 1.0, 2.0),))
    cell = gen.cell_anchors[0]
    expected = []
    for size in (32, 64):  # detectron2 generate_cell_anchors: sizes outer, ratios inner
        for ratio in (0.5, 1.0, 2.0):
            w = math.sqrt(size * size / ratio)
            expected.append([-w / 2, -ratio * w / 2, w / 2, ratio * w / 2])
    torch.testing.assert_close(cell, torch.tensor(expected))
    assert cell[0, 0] != round(float(cell[0, 0]))  # not rounded as torchvision's own generator does
    grid = gen.grid_anchors([(2, 3)], [[torch.tensor(16), torch.tensor(16)]])[0]
    # location (y=1, x=2), offset 0: shift (32, 16), the anchors of that cell in order
    torch.testing.assert_close(grid[(1 * 3 + 2) * 6:(1 * 3 + 2) * 6 + 6], cell + torch.tensor([32.0, 16, 32, 16]))


def test_box_coder_weights_and_round_trip():
    coder = _model(mask_on=False).roi_heads.box_coder
    assert tuple(coder.weights) == (10.0, 10.0, 5.0, 5.0)
    proposals = torch.tensor([[0.0, 0, 10, 20], [5, 5, 25, 15]])
    gt = torch.tensor([[1.0, 2, 11, 22], [4, 6, 30, 14]])
    deltas = coder.encode_single(gt, proposals)
    # dx = 10 * (ctr_gt - ctr_p) / w_p, dw = 5 * log(w_gt / w_p)
    torch.testing.assert_close(deltas[0], torch.tensor([10 * 1 / 10, 10 * 2 / 20, 0.0, 0.0]))
    torch.testing.assert_close(deltas[1, 2], torch.tensor(5 * math.log(26 / 20)))
    torch.testing.assert_close(coder.decode_single(deltas, proposals), gt, atol=1e-4, rtol=0)


def test_rpn_loss_is_sum_over_256_per_image():
    rpn = _model(mask_on=False).rpn
    torch.manual_seed(1)
    n = 40
    objectness, deltas, targets = torch.randn(2 * n, 1), torch.randn(2 * n, 4), torch.randn(2 * n, 4)
    labels = [torch.full((n,), -1.0), torch.full((n,), -1.0)]
    labels[0][:3], labels[0][3:10], labels[1][:2], labels[1][2:5] = 1, 0, 1, 0  # fewer than 256: all sampled
    cls_loss, box_loss = rpn.compute_loss(objectness, deltas, labels, list(targets.split(n)))
    flat = torch.cat(labels)
    valid, pos = flat >= 0, flat == 1
    expected_cls = sum(F.binary_cross_entropy_with_logits(objectness[i, 0], flat[i]) for i in torch.where(valid)[0])
    expected_box = (deltas[pos] - targets[pos]).abs().sum()
    torch.testing.assert_close(cls_loss, expected_cls / (256 * 2))
    torch.testing.assert_close(box_loss, expected_box / (256 * 2))
    # smooth-L1 with beta 0 (detectron2 SMOOTH_L1_BETA 0.0) is L1
    torch.testing.assert_close(box_loss * 512, F.smooth_l1_loss(deltas[pos], targets[pos], beta=0.0, reduction="sum"))


def test_roi_align_is_aligned_v2():
    heads = _model(mask_on=False).roi_heads
    assert heads.pooler.aligned and heads.pooler.sampling_ratio == 0 and heads.pooler.output_size in (14, (14, 14))
    features = torch.randn(1, 4, 16, 16)
    boxes = [torch.tensor([[12.0, 8, 120, 160]])]
    rois = torch.tensor([[0.0, 12, 8, 120, 160]])
    out = heads.pooler(features, boxes)
    torch.testing.assert_close(out, roi_align(features, rois, 14, 1 / 16, 0, aligned=True))  # res4 at 1/16
    assert not torch.allclose(out, roi_align(features, rois, 14, 1 / 16, 0, aligned=False))


def test_predictor_init_and_label_map():
    model = _model(num_classes=20, mask_on=True, arch="resnet18")
    predictor = model.roi_heads.box_predictor
    assert predictor.cls_score.out_features == 21 and predictor.bbox_pred.out_features == 80  # background last, no bg box
    assert abs(predictor.cls_score.weight.std().item() - 0.01) < 0.001
    assert abs(predictor.bbox_pred.weight.std().item() - 0.001) < 0.0001
    assert abs(model.roi_heads.mask_head.predictor.weight.std().item() - 0.001) < 0.0002
    assert predictor.cls_score.bias.abs().max() == 0
    labels = LabelMap(20)
    assert labels.background == 20
    assert labels.to_head(torch.tensor([1, 20])).tolist() == [0, 19]
    assert labels.to_dataset(torch.tensor([0, 19])).tolist() == [1, 20]


def test_sampling_labels_background_last_and_adds_gt():
    heads = _model(num_classes=3).roi_heads
    far = torch.tensor([[200.0, 200, 220, 220]])  # no overlap: background
    target = {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([3])}
    boxes, classes, _matched, _gt = heads.sample([far], [target])[0]
    assert sorted(classes.tolist()) == [2, 3]  # the GT box itself (class 3 -> head 2) and the background (3 = K)
    assert boxes[classes == 2].tolist() == [[0.0, 0, 10, 10]]


def test_mask_head_reuses_res5_features_in_training():
    model = _model()
    calls = []
    model.roi_heads.res5.register_forward_hook(lambda *_: calls.append(1))
    model.train()
    losses = model(*_batch())
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "loss_mask"}
    assert len(calls) == 1  # box head and mask head share one res5 pass
    sum(losses.values()).backward()
    assert model.roi_heads.mask_head.deconv.weight.grad is not None
    calls.clear()
    model.eval()
    with torch.no_grad():
        model(_batch()[0])
    assert len(calls) == 2  # test: boxes, then the final boxes pooled again for the masks


def test_mask_targets_threshold_the_aligned_crop():
    masks = torch.zeros(1, 20, 20, dtype=torch.uint8)
    masks[0, :, :10] = 1  # left half
    target = mask_targets(masks, torch.tensor([[0.0, 0, 20, 20]]), 4)
    assert target.dtype == torch.bool and target[0].tolist() == [[True, True, False, False]] * 4


def test_paste_samples_the_mask_at_pixel_centres_within_the_widened_box():
    """detectron2 mask_ops._do_paste_mask, by hand: pixel x samples the mask at (x + 0.5 - x0) / (x1 - x0) * M - 0.5."""
    half = torch.zeros(1, 1, 14, 14)
    half[..., :7] = 1.0  # left half of the mask on
    out = paste_masks(half, torch.tensor([[0.0, 0.0, 28.0, 28.0]]), (40, 40))[0, 0]
    assert out.shape == (40, 40)
    assert torch.allclose(out[10, [5, 13, 14, 20]], torch.tensor([1.0, 0.75, 0.25, 0.0]))  # cells 6.25, 6.75
    ones = torch.ones(1, 1, 2, 2)  # 14-px cells: bilinear weights reach 7 px beyond the box
    out = paste_masks(ones, torch.tensor([[2.0, 2.0, 30.0, 30.0]]), (40, 40))[0, 0]
    assert out[15, 16] == 1.0
    assert out[15, 30] == pytest.approx(1 - 0.536, abs=1e-3) and out[15, 1] == pytest.approx(1 - 0.536, abs=1e-3)
    assert out[15, 31] == 0 and out[15, 0] == 0 and out[31, 15] == 0  # only floor(x0) - 1 .. ceil(x1) + 1 filled
    assert paste_masks(ones[:0], torch.zeros(0, 4), (8, 9)).shape == (0, 1, 8, 9)


def test_postprocess_drops_boxes_left_empty_by_clipping():
    """detectron2 detector_postprocess keeps ``Boxes.nonempty()`` after scaling and clipping."""
    heads = _model(mask_on=True).roi_heads
    det = {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 5.0, 20.0], [2.0, 3.0, 8.0, 3.0]]),
           "scores": torch.tensor([0.9, 0.8, 0.7]), "classes": torch.tensor([0, 1, 2]),
           "mask_probs": torch.full((3, 1, 14, 14), 0.9)}
    (out,) = heads.postprocess([det], [(20, 20)], [(40, 40)])
    assert out["boxes"].tolist() == [[0.0, 0.0, 20.0, 20.0]] and out["labels"].tolist() == [1]
    assert out["scores"].tolist() == [pytest.approx(0.9)] and out["masks"].shape == (1, 1, 40, 40)
    assert bool((out["masks"][0, 0, :20, :20] > 0.5).all()) and float(out["masks"][0, 0, 22:].max()) == 0


def test_eval_keeps_at_most_100_boxes_over_0_05():
    model = _model(num_classes=3, mask_on=True)
    model.roi_heads.settings = RoiSettings(batch_size_per_image=32, nms_thresh=0.99)
    nn.init.zeros_(model.roi_heads.box_predictor.cls_score.weight)  # uniform scores 1/4 > 0.05
    model.eval()
    with torch.no_grad():
        out = model(_batch()[0], output_sizes=[(140, 180), (64, 80)])
    for o, size in zip(out, [(140, 180), (64, 80)]):
        assert 0 < len(o["boxes"]) <= 100 and bool((o["scores"] > 0.05).all())
        assert o["labels"].min() >= 1 and o["labels"].max() <= 3
        assert o["masks"].shape[1:] == (1, *size) and o["masks"].max() <= 1
        assert o["boxes"][:, 2].max() <= size[1] and o["boxes"][:, 3].max() <= size[0]
    many = _model(num_classes=30, mask_on=False)
    nn.init.zeros_(many.roi_heads.box_predictor.cls_score.weight)  # uniform 1/31 < 0.05: nothing passes
    with torch.no_grad():
        assert all(len(o["boxes"]) == 0 for o in many.eval()(_batch(False)[0]))


def test_padding_to_32_with_zeros():
    model = _model(mask_on=False)
    images = [torch.rand(3, 70, 90), torch.rand(3, 33, 100)]
    batch = model.preprocess(images)
    assert batch.tensors.shape == (2, 3, 96, 128) and batch.image_sizes == [(70, 90), (33, 100)]
    assert batch.tensors[1, :, 33:].abs().sum() == 0 and batch.tensors[0, :, :, 90:].abs().sum() == 0
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    torch.testing.assert_close(batch.tensors[0, :, :70, :90], (images[0] - mean) / std)


def test_detectron2_names_round_trip():
    state = _model().state_dict()
    d2 = to_detectron2_names(state)
    for name in ("backbone.stem.conv1.weight", "backbone.stem.conv1.norm.running_mean", "backbone.res2.0.conv1.norm.weight",
                 "backbone.res3.0.shortcut.weight", "backbone.res4.0.shortcut.norm.bias",
                 "proposal_generator.rpn_head.conv.weight", "proposal_generator.rpn_head.objectness_logits.weight",
                 "proposal_generator.rpn_head.anchor_deltas.bias", "roi_heads.res5.0.conv1.norm.weight",
                 "roi_heads.res5.0.shortcut.weight", "roi_heads.res5.norm.weight",
                 "roi_heads.box_predictor.cls_score.weight", "roi_heads.mask_head.deconv.weight"):
        assert name in d2, name
    assert not any(".bn" in k or "downsample" in k or "layer" in k for k in d2)
    assert list(from_detectron2_names(d2)) == list(state)


def test_norm_parameters_get_their_own_group():
    model = _model(mask_on=False)
    norms, others = norm_parameters(model)
    assert any(p is model.roi_heads.res5.norm.weight for p in norms)
    assert any(p is model.roi_heads.box_predictor.cls_score.bias for p in others)  # biases keep weight decay
    assert len(norms) + len(others) == len(list(model.parameters()))
