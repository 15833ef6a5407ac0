"""JDE / FairMOT-style online association, as UniTrack's MOT, MOTS and PoseTrack heads (numpy; RSM in torch).

Per frame (Wang et al., JDE, ECCV 2020 ``multitracker.py``; UniTrack ``tracker/mot/basetrack``):
1. tracked and lost tracks are Kalman-predicted; appearance cost = reconstruction-similarity (RSM,
   :func:`rsm_cost`); with ``motion`` the cost is ``0.98 * app + 0.02 * Mahalanobis`` and pairs beyond
   the chi-square 95 % gate (4 dof) are forbidden; Hungarian assignment with cost limit 0.7;
2. left-over detections vs left-over *tracked* tracks by IoU distance (1 - IoU) with limit 0.5;
3. unconfirmed tracks (born last frame, not yet matched) vs the rest by IoU distance, limit 0.7;
   an unmatched unconfirmed track is removed;
4. a remaining detection with confidence >= 0.5 starts a new (unconfirmed) track (the MOT adapter drops
   detections at or below that confidence before association, as UniTrack ``prepare_obs``);
5. a track lost for more than the buffer (30 frames at 30 fps) is removed.
IoU is mask IoU when the detections carry masks (MOTS / PoseTrack), box IoU otherwise. A frame
without detections only ages the tracks (UniTrack crashes there).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from mec_eval.tasks.kalman import CHI2_95, KalmanFilter, xyah_to_xyxy, xyxy_to_xyah

NEW, TRACKED, LOST, REMOVED = "new", "tracked", "lost", "removed"


@dataclass
class AssociationParams:
    """The association hyper-parameters; defaults are UniTrack's MOT config values (see tasks/mot.yaml)."""
    motion: bool = True              # Kalman motion term and gating ("motion=False": appearance only)
    motion_lambda: float = 0.98      # cost = lambda * appearance + (1 - lambda) * Mahalanobis
    motion_gated: bool = True        # forbid pairs beyond the chi2 gate (UniTrack: MOT yes, MOTS / PoseTrack no)
    only_position: bool = False      # Mahalanobis on (cx, cy) only (UniTrack PoseTrack)
    gate: float = CHI2_95[4]         # chi2 95 % quantile, 4 dof
    dup_iou_thresh: float = 0.15     # tracked / lost pairs closer than this IoU distance: the younger goes
    match_thresh: float = 0.7        # cost limit of the appearance assignment
    iou_thresh: float = 0.5          # IoU-distance limit for left-over detections
    unconfirmed_thresh: float = 0.7  # IoU-distance limit for unconfirmed tracks
    new_track_thresh: float = 0.5    # detection confidence needed to start a track
    track_buffer: int = 30           # frames a lost track is kept (at 30 fps)
    frame_rate: float = 30.0
    temperature: float = 0.01        # RSM softmax temperature (1/100)


@dataclass
class Detections:
    """One frame's observations: boxes [N, 4] XYXY, scores [N], embeddings (N arrays [cells, C],
    L2-normalised per cell) and optionally masks [N, H, W] bool."""
    boxes: np.ndarray
    scores: np.ndarray
    embeddings: list
    masks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.boxes)


@dataclass
class TrackState:
    """One track: its id, state, Kalman mean / covariance, embedding and last observation."""
    track_id: int
    state: str
    mean: np.ndarray
    covariance: np.ndarray
    embedding: np.ndarray
    box: np.ndarray
    mask: np.ndarray | None
    start_frame: int
    end_frame: int
    confirmed: bool = False
    history: list = field(default_factory=list)


def rsm_cost(track_feats: list, det_feats: list, temperature: float = 0.01,
             block: int = 1 << 24) -> np.ndarray:
    """Reconstruction-similarity cost [T, D] (UniTrack Sec. 3.3, ``core/association/matching.py``
    ``reconsdot_distance``): the cell sets are zero-padded to a common length; every track cell is rebuilt
    from the cells of each detection with softmax weights taken over *all* detections' cells jointly
    (temperature ``temperature``), and every detection cell from the tracks' cells likewise; a pair's
    similarity is the cosine of the flattened rebuilt set with the flattened original one, and
    cost = 1 - mean of the two directions; as ``F.normalize`` there, a rebuilt set of norm < 1e-12 (a pair
    the joint softmax all but ignores) is not rescaled, so its cosine is ~0. Features: [cells, C] arrays,
    rows L2-normalised."""
    if not len(track_feats) or not len(det_feats):
        return np.zeros((len(track_feats), len(det_feats)))
    trk, det = _padded(track_feats), _padded(det_feats)
    (n_trk, n_cells, dim), (n_det, m_cells, _) = trk.shape, det.shape
    aff = (trk.reshape(-1, dim) @ det.reshape(-1, dim).T) / temperature      # [T*N, D*M]
    w_td = torch.softmax(aff, dim=1).reshape(n_trk, n_cells, n_det, m_cells)
    w_dt = torch.softmax(aff, dim=0).T.reshape(n_det, m_cells, n_trk, n_cells)
    dot_td = _rebuilt_cosine(w_td, det, trk, block)                          # [T, D]
    dot_dt = _rebuilt_cosine(w_dt, trk, det, block)                          # [D, T]
    return (1.0 - 0.5 * (dot_td + dot_dt.T)).numpy()


def _padded(feats: list) -> torch.Tensor:
    """[K, max cells, C] float64 of K [cells, C] arrays, zero rows appended (UniTrack ``get_track_feat``); float64
    because at temperature 1/100 the weights of a poorly matching pair underflow float32."""
    out = torch.zeros(len(feats), max(len(f) for f in feats), feats[0].shape[1], dtype=torch.float64)
    for i, f in enumerate(feats):
        out[i, :len(f)] = torch.as_tensor(f, dtype=torch.float64)
    return out


def _rebuilt_cosine(weights: torch.Tensor, keys: torch.Tensor, queries: torch.Tensor, block: int) -> torch.Tensor:
    """cos(flattened sum_m weights[q, n, k, m] keys[k, m], flattened queries[q]) [Q, K], in blocks of q rows."""
    n_q, n_cells, n_k, _ = weights.shape
    query_norm = queries.flatten(1).norm(dim=1).clamp_min(1e-12)
    rows = max(1, block // max(1, n_cells * n_k * keys.shape[2]))
    out = []
    for s in range(0, n_q, rows):
        rebuilt = torch.einsum("qnkm,kmc->qknc", weights[s:s + rows], keys)      # [q, K, N, C]
        dots = torch.einsum("qknc,qnc->qk", rebuilt, queries[s:s + rows])
        norms = rebuilt.flatten(2).norm(dim=2).clamp_min(1e-12) * query_norm[s:s + rows, None]
        out.append(dots / norms)
    return torch.cat(out)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU [N, M] of XYXY boxes."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU [N, M] of boolean masks [N, H, W] and [M, H, W]."""
    a = np.asarray(a, dtype=bool).reshape(len(a), -1).astype(np.float64)
    b = np.asarray(b, dtype=bool).reshape(len(b), -1).astype(np.float64)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def assign(cost: np.ndarray, limit: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Hungarian assignment keeping pairs with cost <= limit: (matches, unmatched rows, unmatched cols)."""
    rows, cols = cost.shape
    if rows == 0 or cols == 0:
        return [], list(range(rows)), list(range(cols))
    # Forbidden pairs (inf) cost more than any allowed one, so the solver never prefers them.
    finite = np.where(np.isfinite(cost), cost, limit + 1e6)
    r, c = linear_sum_assignment(finite)
    matches = [(int(i), int(j)) for i, j in zip(r, c) if finite[i, j] <= limit]
    matched_rows, matched_cols = {i for i, _ in matches}, {j for _, j in matches}
    return (matches, [i for i in range(rows) if i not in matched_rows],
            [j for j in range(cols) if j not in matched_cols])


class Tracker:
    """Online multi-object tracker; call :meth:`update` once per frame, in order."""

    def __init__(self, params: AssociationParams | None = None):
        self.params = params or AssociationParams()
        self.kalman = KalmanFilter()
        self.tracks: list[TrackState] = []
        self.frame = 0
        self.next_id = 1
        self.max_lost = int(round(self.params.frame_rate / 30.0 * self.params.track_buffer))

    def _iou_distance(self, tracks: list[TrackState], dets: Detections, idx: list[int]) -> np.ndarray:
        if not tracks or not idx:
            return np.zeros((len(tracks), len(idx)))
        if dets.masks is not None and all(t.mask is not None for t in tracks):
            return 1.0 - mask_iou(np.stack([t.mask for t in tracks]), dets.masks[idx])
        return 1.0 - box_iou(np.stack([t.box for t in tracks]), dets.boxes[idx])

    def _appearance_cost(self, tracks: list[TrackState], dets: Detections) -> np.ndarray:
        cost = rsm_cost([t.embedding for t in tracks], dets.embeddings, self.params.temperature)
        if not self.params.motion or not tracks or not len(dets):
            return cost
        measurements = xyxy_to_xyah(dets.boxes)
        p = self.params
        gate = CHI2_95[2] if p.only_position else p.gate
        for i, track in enumerate(tracks):
            gating = self.kalman.gating_distance(track.mean, track.covariance, measurements, p.only_position)
            if p.motion_gated:
                cost[i, gating > gate] = np.inf
            cost[i] = p.motion_lambda * cost[i] + (1 - p.motion_lambda) * gating
        return cost

    def _observe(self, track: TrackState, dets: Detections, j: int) -> None:
        """Kalman update and embedding refresh of ``track`` from detection ``j``; the track is (re)tracked."""
        track.mean, track.covariance = self.kalman.update(track.mean, track.covariance,
                                                          xyxy_to_xyah(dets.boxes[j])[0])
        # UniTrack's RSM reads the track's current feature (``feat_flag='curr'``), not the smoothed one.
        track.embedding = dets.embeddings[j]
        track.box = dets.boxes[j].astype(np.float64)
        track.mask = None if dets.masks is None else dets.masks[j]
        track.state, track.confirmed, track.end_frame = TRACKED, True, self.frame
        track.history.append((self.frame, j))

    def update(self, dets: Detections) -> list[tuple[int, int]]:
        """Associate one frame; returns (track id, detection index) of the confirmed, tracked tracks."""
        self.frame += 1
        p = self.params
        for track in self.tracks:
            if track.state in (TRACKED, LOST):
                if track.state == LOST:  # STrack.multi_predict: a lost track's height velocity is reset
                    track.mean = track.mean.copy()
                    track.mean[7] = 0.0
                track.mean, track.covariance = self.kalman.predict(track.mean, track.covariance)
                track.box = xyah_to_xyxy(track.mean)[0]
        confirmed = [t for t in self.tracks if t.confirmed and t.state in (TRACKED, LOST)]
        unconfirmed = [t for t in self.tracks if not t.confirmed and t.state == NEW]
        remaining = list(range(len(dets)))
        # 1. appearance (+ motion) on tracked and lost tracks
        matches, rows, cols = assign(self._appearance_cost(confirmed, dets), p.match_thresh)
        for i, j in matches:
            self._observe(confirmed[i], dets, remaining[j])
        remaining = [remaining[j] for j in cols]
        # 2. IoU for left-over detections vs left-over tracked (not lost) tracks
        left = [confirmed[i] for i in rows if confirmed[i].state == TRACKED]
        matches, rows2, cols = assign(self._iou_distance(left, dets, remaining), p.iou_thresh)
        for i, j in matches:
            self._observe(left[i], dets, remaining[j])
        remaining = [remaining[j] for j in cols]
        for i in rows2:
            left[i].state = LOST
        # 3. unconfirmed tracks by IoU; the unmatched ones go
        matches, rows3, cols = assign(self._iou_distance(unconfirmed, dets, remaining), p.unconfirmed_thresh)
        for i, j in matches:
            self._observe(unconfirmed[i], dets, remaining[j])
        remaining = [remaining[j] for j in cols]
        for i in rows3:
            unconfirmed[i].state = REMOVED
        # 4. new tracks
        for j in remaining:
            if dets.scores[j] >= p.new_track_thresh:
                self._start(dets, j)
        # 5. expire lost tracks
        for track in self.tracks:
            if track.state == LOST and self.frame - track.end_frame > self.max_lost:
                track.state = REMOVED
        self._remove_duplicates()
        self.tracks = [t for t in self.tracks if t.state != REMOVED]
        return [(t.track_id, t.history[-1][1]) for t in self.tracks
                if t.state == TRACKED and t.confirmed and t.end_frame == self.frame]

    def _remove_duplicates(self) -> None:
        """JDE ``remove_duplicate_stracks``: a tracked and a lost track on the same spot; the younger goes."""
        tracked = [t for t in self.tracks if t.state == TRACKED and t.confirmed]
        lost = [t for t in self.tracks if t.state == LOST]
        if not tracked or not lost:
            return
        close = 1.0 - box_iou(np.stack([t.box for t in tracked]), np.stack([t.box for t in lost]))
        for i, j in zip(*np.nonzero(close < self.params.dup_iou_thresh)):
            a, b = tracked[i], lost[j]
            younger = a if a.end_frame - a.start_frame < b.end_frame - b.start_frame else b
            younger.state = REMOVED

    def _start(self, dets: Detections, j: int) -> None:
        mean, cov = self.kalman.initiate(xyxy_to_xyah(dets.boxes[j])[0])
        # JDE: tracks born in the first frame are confirmed at once; later ones need a second match.
        track = TrackState(self.next_id, TRACKED if self.frame == 1 else NEW, mean, cov, dets.embeddings[j],
                           dets.boxes[j].astype(np.float64), None if dets.masks is None else dets.masks[j],
                           self.frame, self.frame, confirmed=self.frame == 1, history=[(self.frame, j)])
        self.next_id += 1
        self.tracks.append(track)
