"""Association on hand-made tracks and the Kalman filter against its closed form."""
import numpy as np

from mec_eval.tasks.association import AssociationParams, Detections, Tracker, rsm_cost
from mec_eval.tasks.kalman import KalmanFilter, xyxy_to_xyah


def _emb(direction, cells=4, dim=8):
    v = np.zeros((cells, dim))
    v[:, direction] = 1.0
    return v


def _dets(boxes, dirs, scores=None):
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    return Detections(boxes, np.ones(len(boxes)) if scores is None else np.asarray(scores), [_emb(d) for d in dirs])


def test_occlusion_and_empty_frame_keep_the_id():
    tracker = Tracker(AssociationParams(motion=True))
    ids = []
    for t in range(6):
        if t in (3, 4):  # occluded: no detection at all (UniTrack crashed here)
            out = tracker.update(_dets([], []))
            assert out == []
            continue
        out = tracker.update(_dets([[10 + 2 * t, 10, 30 + 2 * t, 50]], [0]))
        ids.append(out[0][0])
    assert len(set(ids)) == 1


def test_appearance_prevents_an_id_swap_when_boxes_cross():
    tracker = Tracker(AssociationParams(motion=False))
    first = tracker.update(_dets([[0, 0, 20, 40], [100, 0, 120, 40]], [0, 1]))
    by_dir = {j: tid for tid, j in first}
    # Both objects jump to each other's place: IoU would swap them, appearance must not.
    out = {j: tid for tid, j in tracker.update(_dets([[100, 0, 120, 40], [0, 0, 20, 40]], [0, 1]))}
    assert out[0] == by_dir[0] and out[1] == by_dir[1]


def test_rsm_cost_is_zero_for_identical_and_one_for_orthogonal_cells():
    cost = rsm_cost([_emb(0)], [_emb(0), _emb(1)])
    np.testing.assert_allclose(cost, [[0.0, 1.0]], atol=1e-9)


def test_kalman_predict_and_update_match_the_closed_form():
    kf = KalmanFilter()
    z = xyxy_to_xyah(np.array([[10, 20, 30, 60]]))[0]
    mean, cov = kf.initiate(z)
    mean_p, cov_p = kf.predict(mean, cov)
    F = np.eye(8)
    F[:4, 4:] = np.eye(4)
    h = mean[3]
    Q = np.diag(np.square([h / 20, h / 20, 1e-2, h / 20, h / 160, h / 160, 1e-5, h / 160]))
    np.testing.assert_allclose(cov_p, F @ cov @ F.T + Q)
    z2 = z + [1, 2, 0, 1]
    mean_u, cov_u = kf.update(mean_p, cov_p, z2)
    H = np.eye(4, 8)
    R = np.diag(np.square([mean_p[3] / 20, mean_p[3] / 20, 1e-1, mean_p[3] / 20]))
    S = H @ cov_p @ H.T + R
    K = cov_p @ H.T @ np.linalg.inv(S)
    np.testing.assert_allclose(mean_u, mean_p + K @ (z2 - H @ mean_p), rtol=1e-9)
    np.testing.assert_allclose(cov_u, cov_p - K @ S @ K.T, rtol=1e-8, atol=1e-10)
    d = kf.gating_distance(mean_p, cov_p, z2[None])
    np.testing.assert_allclose(d, [(z2 - mean_p[:4]) @ np.linalg.inv(S) @ (z2 - mean_p[:4])], rtol=1e-9)


def test_rsm_cost_matches_a_loop_over_unitrack_reconsdot():
    """Joint softmax over all detections' cells, zero padding, cosine of the flattened sets (matching.py)."""
    rng = np.random.default_rng(0)
    raw = [rng.normal(size=(n, 6)) for n in (3, 5, 4, 2, 5)]
    cells = [a / np.linalg.norm(a, axis=1, keepdims=True) for a in raw]
    tracks, dets = cells[:2], cells[2:]
    T = np.stack([np.vstack([f, np.zeros((5 - len(f), 6))]) for f in tracks])  # zero-padded to 5 cells
    D = np.stack([np.vstack([f, np.zeros((5 - len(f), 6))]) for f in dets])
    aff = np.einsum("tnc,dmc->tndm", T, D) * 100
    ref = np.zeros((2, 3))
    for t in range(2):
        for d in range(3):
            w = np.exp(aff[t] - aff[t].max(axis=(1, 2), keepdims=True))
            w /= w.sum(axis=(1, 2), keepdims=True)                 # over every det cell
            r = (w[:, d] @ D[d]).ravel()
            v = np.exp(aff[:, :, d] - aff[:, :, d].max(axis=(0, 1), keepdims=True))
            v /= v.sum(axis=(0, 1), keepdims=True)                 # over every track cell
            q = np.einsum("nm,nc->mc", v[t], T[t]).ravel()
            # F.normalize's eps 1e-12: a reconstruction weaker than that is not rescaled (cosine ~ 0)
            cos_t = r @ T[t].ravel() / (max(np.linalg.norm(r), 1e-12) * np.linalg.norm(T[t]))
            cos_d = q @ D[d].ravel() / (max(np.linalg.norm(q), 1e-12) * np.linalg.norm(D[d]))
            ref[t, d] = 1 - 0.5 * (cos_t + cos_d)
    np.testing.assert_allclose(rsm_cost(tracks, dets), ref, atol=1e-5)
