"""UniTrack's two SOT heads on frozen features: SiamFC-style cross-correlation and DCFNet's filter.

Features are [C, S, S] maps of a search window warped to a fixed size (S cells). XCorr (Bertinetto et
al., ECCV-W 2016, as UniTrack ``tracker/sot``): the template is the central ``template`` x ``template``
cells of the first frame's window, never updated; the response is 0.1 x the correlation of the
Hann-windowed search features with it. DCF (Wang et al., "DCFNet", 2017, closed form eq. 4-5): with a
Gaussian label y rolled to the origin, alpha_f = y_f / (sum_c |z_f|^2 + lambda), response =
irfft2(sum_c x_f conj(z_f) alpha_f); template and alpha are linearly updated with rate ``lr``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def hann2d(size: int, device=None) -> torch.Tensor:
    """[S, S] outer product of periodic=False Hann windows (as np.hanning / DCFNet's cos_window)."""
    window = torch.hann_window(size, periodic=False, dtype=torch.float64, device=device)
    return (window[:, None] * window[None, :]).float()


def gaussian_label(size: int, sigma: float, device=None) -> torch.Tensor:
    """[S, S] Gaussian of std ``sigma`` cells with its peak at (0, 0), wrapping around (circular shifts)."""
    offsets = (torch.arange(size, device=device) + size // 2) % size - size // 2
    d2 = offsets[:, None].double() ** 2 + offsets[None, :].double() ** 2
    return torch.exp(-0.5 * d2 / sigma ** 2).float()


def circular_peak(response: torch.Tensor) -> tuple[int, int, float]:
    """(dy, dx, value) of a circular response's maximum, displacements wrapped into [-S/2, S/2)."""
    size_y, size_x = response.shape[-2:]
    index = int(torch.argmax(response))
    dy, dx = divmod(index, size_x)
    dy = dy - size_y if dy > size_y // 2 else dy
    dx = dx - size_x if dx > size_x // 2 else dx
    return dy, dx, float(response.flatten()[index])


class XCorrHead:
    """Cross-correlation with the first frame's central template (never updated)."""

    def __init__(self, features: torch.Tensor, template: int, response_scale: float = 0.1):
        size = features.shape[-1]
        start = (size - template) // 2
        self.template = features[:, start:start + template, start:start + template].contiguous()
        self.window = hann2d(size, features.device)
        self.response_scale = response_scale

    def respond(self, features: torch.Tensor) -> torch.Tensor:
        """[N, S - t + 1, S - t + 1] responses of N search maps [N, C, S, S]."""
        return self.response_scale * F.conv2d(features * self.window, self.template[None])[:, 0]

    def displacement(self, response: torch.Tensor) -> tuple[float, float, float]:
        """(dy, dx) in cells of the peak from the response centre, and the peak value."""
        size_y, size_x = response.shape[-2:]
        index = int(torch.argmax(response))
        dy, dx = divmod(index, size_x)
        return dy - (size_y - 1) / 2, dx - (size_x - 1) / 2, float(response.flatten()[index])


class DCFHead:
    """DCFNet correlation filter in the Fourier domain, learnt in closed form and updated linearly."""

    def __init__(self, features: torch.Tensor, sigma: float, lam: float = 1e-4, lr: float = 0.01):
        size = features.shape[-1]
        self.window = hann2d(size, features.device)
        self.label_f = torch.fft.rfft2(gaussian_label(size, sigma, features.device))
        self.lam, self.lr = lam, lr
        self.z_f, self.alpha_f = self._learn(features)

    def _learn(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z_f = torch.fft.rfft2(features * self.window)
        energy = (z_f.real ** 2 + z_f.imag ** 2).sum(dim=0)
        return z_f, self.label_f / (energy + self.lam)

    def respond(self, features: torch.Tensor) -> torch.Tensor:
        """[N, S, S] circular responses of N search maps [N, C, S, S]; peak at the displacement."""
        x_f = torch.fft.rfft2(features * self.window)
        cross = (x_f * self.z_f.conj()).sum(dim=1)
        return torch.fft.irfft2(cross * self.alpha_f, s=features.shape[-2:])

    def displacement(self, response: torch.Tensor) -> tuple[float, float, float]:
        dy, dx, value = circular_peak(response)
        return float(dy), float(dx), value

    def update(self, features: torch.Tensor) -> None:
        """Blend in the filter learnt on the window at the new target position (rate ``lr``)."""
        z_f, alpha_f = self._learn(features)
        self.z_f = (1 - self.lr) * self.z_f + self.lr * z_f
        self.alpha_f = (1 - self.lr) * self.alpha_f + self.lr * alpha_f
