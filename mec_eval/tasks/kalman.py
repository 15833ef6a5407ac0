"""Constant-velocity Kalman filter on (cx, cy, aspect, h), as JDE / DeepSORT (``kalman_filter.py``).

State ``[cx, cy, a, h, vcx, vcy, va, vh]``; the process and measurement noise scale with the box
height (std weights 1/20 for position, 1/160 for velocity); the aspect ratio a = w / h has fixed
small noise (1e-2 measurement, 1e-5 velocity), as the DeepSORT filter UniTrack reuses.
:meth:`KalmanFilter.gating_distance` is the squared Mahalanobis distance of measurements to the
predicted state, gated at the 95 % chi-square quantile (:data:`CHI2_95`).
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

CHI2_95 = {1: 3.8415, 2: 5.9915, 3: 7.8147, 4: 9.4877}  # 0.95 quantile of chi2 with N degrees of freedom


def xyxy_to_xyah(boxes: np.ndarray) -> np.ndarray:
    """[N, 4] corner boxes -> [N, 4] (centre x, centre y, width / height, height)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return np.stack([boxes[:, 0] + w / 2, boxes[:, 1] + h / 2, w / np.maximum(h, 1e-6), h], axis=1)


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    """Inverse of :func:`xyxy_to_xyah` on the first four state entries."""
    xyah = np.asarray(xyah, dtype=np.float64).reshape(-1, xyah.shape[-1])[:, :4]
    h = xyah[:, 3]
    w = xyah[:, 2] * h
    return np.stack([xyah[:, 0] - w / 2, xyah[:, 1] - h / 2, xyah[:, 0] + w / 2, xyah[:, 1] + h / 2], axis=1)


class KalmanFilter:
    """The 8-state constant-velocity filter of DeepSORT with unit time step."""

    def __init__(self, std_weight_position: float = 1.0 / 20, std_weight_velocity: float = 1.0 / 160):
        ndim = 4
        self.motion = np.eye(2 * ndim)
        self.motion[:ndim, ndim:] = np.eye(ndim)          # x' = x + v
        self.update_mat = np.eye(ndim, 2 * ndim)          # measure the position part
        self.w_pos, self.w_vel = std_weight_position, std_weight_velocity

    def initiate(self, measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance of a new track from one (cx, cy, a, h) measurement (zero velocity)."""
        mean = np.concatenate([measurement, np.zeros(4)])
        h = measurement[3]
        std = [2 * self.w_pos * h, 2 * self.w_pos * h, 1e-2, 2 * self.w_pos * h,
               10 * self.w_vel * h, 10 * self.w_vel * h, 1e-5, 10 * self.w_vel * h]
        return mean, np.diag(np.square(std))

    def _process_noise(self, h: float) -> np.ndarray:
        std = [self.w_pos * h, self.w_pos * h, 1e-2, self.w_pos * h,
               self.w_vel * h, self.w_vel * h, 1e-5, self.w_vel * h]
        return np.diag(np.square(std))

    def predict(self, mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One time step: x = F x, P = F P F^T + Q."""
        mean = self.motion @ mean
        covariance = self.motion @ covariance @ self.motion.T + self._process_noise(mean[3])
        return mean, covariance

    def project(self, mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The state in measurement space: H x and H P H^T + R."""
        h = mean[3]
        std = [self.w_pos * h, self.w_pos * h, 1e-1, self.w_pos * h]
        return self.update_mat @ mean, self.update_mat @ covariance @ self.update_mat.T + np.diag(np.square(std))

    def update(self, mean: np.ndarray, covariance: np.ndarray,
               measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Correction with one measurement: K = P H^T S^-1 (by Cholesky), x += K (z - H x), P -= K S K^T."""
        projected_mean, projected_cov = self.project(mean, covariance)
        factor = scipy.linalg.cho_factor(projected_cov, lower=True, check_finite=False)
        gain = scipy.linalg.cho_solve(factor, (covariance @ self.update_mat.T).T, check_finite=False).T
        mean = mean + (measurement - projected_mean) @ gain.T
        covariance = covariance - gain @ projected_cov @ gain.T
        return mean, covariance

    def gating_distance(self, mean: np.ndarray, covariance: np.ndarray, measurements: np.ndarray,
                        only_position: bool = False) -> np.ndarray:
        """Squared Mahalanobis distance [N] of (cx, cy, a, h) measurements to the projected state."""
        projected_mean, projected_cov = self.project(mean, covariance)
        measurements = np.asarray(measurements, dtype=np.float64).reshape(-1, 4)
        if only_position:
            projected_mean, projected_cov, measurements = projected_mean[:2], projected_cov[:2, :2], measurements[:, :2]
        chol = np.linalg.cholesky(projected_cov)
        z = scipy.linalg.solve_triangular(chol, (measurements - projected_mean).T, lower=True, check_finite=False)
        return np.sum(z * z, axis=0)
