"""SOT heads and VOS label propagation against independent formulations; end-to-end runs and resume."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mec_eval.tasks.runner import expand_task, run_task_all
from mec_eval.tasks.sot_heads import (
    DCFHead,
    XCorrHead,
    circular_peak,
    gaussian_label,
    hann2d,
)
from mec_eval.tasks.video_configs import VOSParams
from mec_eval.tasks.vos import propagate_labels
from mec_eval.utils import UserError

TINY = ["data.shapes.videos=1", "data.shapes.frames=4", "data.shapes.height=48", "data.shapes.width=64"]


def _circular_correlation(x, z):
    """r[dy, dx] = sum_c,u,v x[c, u + dy, v + dx] z[c, u, v] (indices mod S), by explicit shifts."""
    size = x.shape[-1]
    out = np.zeros((size, size))
    for dy in range(size):
        for dx in range(size):
            out[dy, dx] = (np.roll(x, (-dy, -dx), axis=(1, 2)) * z).sum()
    return out


def _circular_convolution(a, b):
    size = a.shape[-1]
    return sum(a[p, q] * np.roll(b, (p, q), axis=(0, 1)) for p in range(size) for q in range(size))


def test_dcf_response_equals_direct_circular_correlation():
    torch.manual_seed(0)
    z, x = torch.randn(3, 8, 8, dtype=torch.float64), torch.randn(1, 3, 8, 8, dtype=torch.float64)
    head = DCFHead(z.float(), sigma=1.2, lam=1e-4)
    response = head.respond(x.float())[0].double().numpy()
    window = hann2d(8).double().numpy()
    alpha = torch.fft.irfft2(head.alpha_f, s=(8, 8)).double().numpy()  # the filter in the spatial domain
    direct = _circular_convolution(alpha, _circular_correlation(x[0].numpy() * window, z.numpy() * window))
    assert np.allclose(response, direct, atol=1e-4 * np.abs(direct).max())


def test_dcf_learns_the_label_on_its_own_template():
    torch.manual_seed(1)
    z = torch.randn(16, 12, 12)
    head = DCFHead(z, sigma=1.5, lam=1e-4)
    response = head.respond(z[None])[0]
    # Closed form: response_f = y_f |z_f|^2 / (|z_f|^2 + lambda) ~ y_f, so the response is the label.
    assert torch.allclose(response, gaussian_label(12, 1.5), atol=1e-3)
    assert circular_peak(response)[:2] == (0, 0)
    before = head.alpha_f.clone()
    head.update(torch.randn(16, 12, 12))
    assert not torch.allclose(head.alpha_f, before)


def test_gaussian_label_and_circular_peak():
    label = gaussian_label(9, 2.0)
    assert label[0, 0] == 1 and torch.isclose(label[0, 1], torch.tensor(np.exp(-0.5 / 4.0), dtype=torch.float32))
    assert torch.equal(label[0, 1], label[0, -1])  # wraps around
    response = torch.zeros(9, 9)
    response[7, 2] = 1  # row 7 of 9 is a shift of -2
    assert circular_peak(response) == (-2, 2, 1.0)


def test_xcorr_response_is_windowed_correlation_with_the_central_template():
    torch.manual_seed(2)
    z, x = torch.randn(4, 10, 10), torch.randn(2, 4, 10, 10)
    head = XCorrHead(z, template=4, response_scale=0.1)
    assert torch.equal(head.template, z[:, 3:7, 3:7])
    response = head.respond(x)
    windowed = x * hann2d(10)
    direct = torch.stack([torch.stack([0.1 * (windowed[:, :, i:i + 4, j:j + 4] * head.template).sum(dim=(1, 2, 3))
                                       for j in range(7)], dim=-1) for i in range(7)], dim=-2)
    assert torch.allclose(response, direct, atol=1e-5)
    peak = torch.zeros(7, 7)
    peak[3, 5] = 1
    assert head.displacement(peak)[:2] == (0.0, 2.0)


def _two_regions(left_label: bool):
    """A 6 x 8 feature map: left half one unit vector, right half another."""
    feat = torch.zeros(2, 6, 8)
    feat[0, :, :4], feat[1, :, 4:] = 1, 1
    labels = torch.zeros(2, 6, 8)
    labels[1 if left_label else 0, :, :4], labels[0 if left_label else 1, :, 4:] = 1, 1
    return feat, labels


def test_label_propagation_two_regions_is_exact():
    feat, labels = _two_regions(True)
    params = VOSParams(topk=5, radius=2.0, chunk=2)
    out = propagate_labels(feat, (feat, labels), [(feat, labels)], params)
    assert torch.equal(out, labels)
    # The regions swap sides: the first frame (unrestricted) still gives each query its region's label.
    swapped = torch.flip(feat, dims=[2])
    assert torch.equal(propagate_labels(swapped, (feat, labels), [], params), torch.flip(labels, dims=[2]))


def test_label_propagation_restricts_previous_frames_to_the_radius():
    feat, labels = _two_regions(True)
    query = F.normalize(torch.rand(2, 6, 8), dim=0)
    params = VOSParams(topk=3, radius=1.5, chunk=6, temperature=0.05)
    # Only the previous frame; the first frame offers zero labels, so what comes back is from the radius.
    out = propagate_labels(query, (feat, torch.zeros_like(labels)), [(feat, labels)], params)
    # Keys within 1.5 cells of column 0 are in the left half: all labels there come from label 1.
    assert torch.all(out[0, :, 0] == 0) and torch.all(out[1, :, 0] <= 1)


def _dense_propagation(query, first, previous, params):
    """Reference: every key of every context frame in one list, radius by explicit distances, one top-k."""
    channels, height, width = query.shape
    rows, cols = np.divmod(np.arange(height * width), width)
    dist = np.hypot(rows[:, None] - rows[None], cols[:, None] - cols[None])
    q = query.reshape(channels, -1).T.double() / params.temperature
    scores, labels = [q @ first[0].reshape(channels, -1).double()], [first[1].reshape(len(first[1]), -1)]
    for feat, label in previous:
        frame_scores = q @ feat.reshape(channels, -1).double()
        frame_scores[torch.from_numpy(dist >= params.radius)] = float("-inf")
        scores.append(frame_scores)
        labels.append(label.reshape(len(label), -1))
    scores, labels = torch.cat(scores, dim=1), torch.cat(labels, dim=1).double()
    best, index = scores.topk(params.topk, dim=1)
    out = (torch.softmax(best, dim=1)[..., None] * labels.T[index]).sum(dim=1)
    return out.T.reshape(-1, height, width).float()


@pytest.mark.parametrize("chunk", [1, 3, 7, 50])
def test_label_propagation_equals_a_dense_reference(chunk):
    torch.manual_seed(3)
    maps = [F.normalize(torch.randn(8, 7, 9), dim=0) for _ in range(4)]
    labels = [torch.softmax(torch.randn(3, 7, 9), dim=0) for _ in range(4)]
    params = VOSParams(topk=6, radius=2.5, chunk=chunk, temperature=0.05)
    first, previous = (maps[1], labels[1]), list(zip(maps[2:], labels[2:]))
    expected = _dense_propagation(maps[0], first, previous, params)
    assert torch.allclose(propagate_labels(maps[0], first, previous, params), expected, atol=1e-5)
    assert torch.allclose(propagate_labels(maps[0], first, [], params), _dense_propagation(maps[0], first, [], params),
                          atol=1e-5)


def test_expand_gives_one_run_per_layer():
    assert expand_task("sot-cpu-small", []) == [["model.layer=3"], ["model.layer=4"]]
    assert expand_task("vos-cpu-small", ["model.layer=4"]) == [["model.layer=4"]]


@pytest.mark.slow
@pytest.mark.parametrize("task,metrics", [("sot-cpu-small", {"auc_xcorr", "auc_dcf"}),
                                          ("vos-cpu-small", {"j_mean", "f_mean", "jf_mean"})])
def test_end_to_end_both_layers(tmp_path, validate_result, task, metrics):
    outcomes = run_task_all(task, "random:resnet_tiny", tmp_path, TINY, quiet=True)
    assert len(outcomes) == 2
    layers = set()
    for outcome in outcomes:
        result = validate_result(outcome.path)
        assert set(result["metrics"]) == metrics and all(0 <= v <= 100 for v in result["metrics"].values())
        extra = result["extra"]
        layers.add(extra["layer"])
        assert extra["fps"] > 0 and 0 < extra["backbone_share"] <= 1 and "shapes-video-0000" in extra["per_sequence"]
    assert layers == {3, 4}


@pytest.mark.slow
def test_resume_skips_finished_sequences(tmp_path, monkeypatch, validate_result):
    from mec_eval.tasks import sot

    overrides = [*TINY, "data.shapes.videos=2", "model.layer=3"]
    first = run_task_all("sot-cpu-small", "random:resnet_tiny", tmp_path, overrides, quiet=True)[0]
    folder = first.path.parent
    records = sorted(p.name for p in (folder / "sequences").glob("*.json"))
    assert records == ["shapes-video-0000.json", "shapes-video-0001.json"]
    (folder / "sequences" / "shapes-video-0001.json").unlink()  # as if cut off during sequence 2
    first.path.unlink()
    calls = []
    real = sot.track_sequence
    monkeypatch.setattr(sot, "track_sequence", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = run_task_all("sot-cpu-small", "random:resnet_tiny", tmp_path, overrides, quiet=True)[0]
    assert len(calls) == 1 and validate_result(again.path)["metrics"] == first.result["metrics"]


@pytest.mark.parametrize("overrides,match", [
    (["model.layer=5"], "model.layer"),
    (["data.name=davis2017"], "data.name"),
    (["data.name=otb2015"], "data.root"),
    (["data.name=otb2015", "data.root=/nonexistent/otb"], "not a folder"),
    (["data.shapes.frames=1"], "frames"),
    (["data.sequences=[a/b]"], "folder name"),
    (["data.shapes.palette=rainbow"], "palette"),
    (["data.shapes.distractors=17"], "distractors"),
    (["data.shapes.lighting=0.9"], "lighting"),
    (["data.shapes.palette_jitter=65"], "palette_jitter"),
    (["data.shapes.palette_jitter=1.5"], "palette_jitter"),
])
def test_hostile_sot_configs(tmp_path, overrides, match):
    with pytest.raises(UserError, match=match):
        run_task_all("sot-cpu-small", "random:resnet_tiny", tmp_path, [*TINY, "model.layer=3", *overrides], quiet=True)
    assert not (tmp_path / "sot-cpu-small").exists() or not any((tmp_path / "sot-cpu-small").rglob("result.json"))


def test_hostile_vos_root_and_non_resnet(tmp_path):
    with pytest.raises(UserError, match="ImageSets"):
        run_task_all("vos-cpu-small", "random:resnet_tiny", tmp_path,
                     ["data.name=davis2017", f"data.root={tmp_path}", "model.layer=3"], quiet=True)
    from mec_eval.tasks.video_base import FrozenFeatures

    class NotAResNet:
        backbone = torch.nn.Linear(2, 2)
    with pytest.raises(UserError, match="ResNet"):
        FrozenFeatures(NotAResNet(), 3, "cpu", "fp32")


def test_sequence_record_file_is_json(tmp_path):
    from mec_eval.tasks.video_base import SequenceRecords
    records = SequenceRecords(tmp_path)
    records.save("a b", {"frames": 3})
    assert records.done("a b") == {"frames": 3} and json.loads(records.path("a b").read_text())
    records.path("c").write_text("{truncated")
    assert records.done("c") is None
