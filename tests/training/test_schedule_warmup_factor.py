"""detectron2's warm-up (start factor, length in iterations) in the shared LRSchedule."""
import pytest

from mec_eval.training.schedule import LRSchedule


def test_detectron2_linear_warmup_then_steps():
    s = LRSchedule("multistep", iters_per_epoch=7, total_iters=300, milestones=(200, 250), gamma=0.1,
                   warmup_factor=0.001, warmup_iterations=100)
    assert s.factor(0) == pytest.approx(0.001)
    assert s.factor(50) == pytest.approx(0.001 * 0.5 + 0.5)  # factor * (1 - alpha) + alpha
    assert s.factor(100) == 1.0 and s.factor(199) == 1.0
    assert s.factor(200) == pytest.approx(0.1) and s.factor(250) == pytest.approx(0.01)


def test_default_warmup_unchanged():
    s = LRSchedule("cosine", iters_per_epoch=10, total_iters=100, warmup_epochs=1.0)
    assert s.factor(0) == 0.0 and s.factor(5) == pytest.approx(0.5)
