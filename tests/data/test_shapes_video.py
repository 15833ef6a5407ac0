"""Synthetic shapes videos: annotations read off the drawn masks, determinism, motion, hostile arguments."""
import numpy as np
import pytest

from mec_eval.data.shapes_video import make_video, make_videos
from mec_eval.utils import UserError


@pytest.fixture(scope="module")
def video():
    return make_video(3, n_frames=12)


def test_shapes_and_types(video):
    assert video.name == "shapes-video-0003" and len(video.frames) == 12
    assert all(f.dtype == np.uint8 and f.shape == (96, 128, 3) for f in video.frames)
    assert [t.id for t in video.tracks] == [1, 2, 3] and len({t.kind for t in video.tracks}) == 3
    assert all(len(t.frames) == 12 for t in video.tracks)


def test_boxes_are_visible_mask_extents(video):
    for track in video.tracks:
        for entry in track.frames:
            if entry is None:
                continue
            rows, cols = np.nonzero(entry.mask)
            assert entry.box == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
            assert 0 < entry.visibility <= 1 and entry.mask.shape == (96, 128)
            assert entry.keypoints.ndim == 2 and entry.keypoints.shape[1] == 3
            assert set(np.unique(entry.keypoints[:, 2])) <= {0.0, 1.0}


def test_masks_of_different_objects_are_disjoint():
    for seed in range(4):
        v = make_video(seed, n_frames=10)
        for t in range(10):
            masks = [tr.frames[t].mask for tr in v.tracks if tr.frames[t] is not None]
            total = np.sum(masks, axis=0) if masks else np.zeros(1)
            assert total.max() <= 1


def test_deterministic_per_seed():
    a, b, c = make_video(5, n_frames=6), make_video(5, n_frames=6), make_video(6, n_frames=6)
    assert all(np.array_equal(x, y) for x, y in zip(a.frames, b.frames))
    assert all(np.array_equal(x.mask, y.mask) for ta, tb in zip(a.tracks, b.tracks)
               for x, y in zip(ta.frames, tb.frames) if x is not None)
    assert not np.array_equal(a.frames[0], c.frames[0])
    assert [v.name for v in make_videos(2, 5, n_frames=3)] == ["shapes-video-0005", "shapes-video-0006"]


def test_smooth_motion_occlusion_and_leaving():
    occluded = left = 0
    for seed in range(10):
        v = make_video(seed)
        for track in v.tracks:
            for a, b in zip(track.frames, track.frames[1:]):
                if a is not None and b is not None and min(a.visibility, b.visibility) > 0.95:
                    # Fully visible in both frames: the box centre moves a few pixels at most.
                    shift = np.subtract(a.box, b.box).reshape(2, 2).sum(axis=0) / 2
                    assert np.linalg.norm(shift) < 8
        left += any(e is None for e in v.tracks[0].frames)
        occluded += any(e is not None and e.visibility < 0.9 and 2 < e.box[0] and e.box[2] < 126
                        and 2 < e.box[1] and e.box[3] < 94 for t in v.tracks for e in t.frames)
    assert left >= 6 and occluded >= 6


@pytest.mark.parametrize("kw", [{"n_frames": 1}, {"n_frames": "8"}, {"n_objects": 0}, {"n_objects": 11},
                                {"size": (8, 8)}, {"size": "big"}, {"size": (96,)}])
def test_bad_arguments(kw):
    with pytest.raises(UserError):
        make_video(0, **kw)


def test_bad_seed_and_count():
    for bad in (-1, 1.5, True):
        with pytest.raises(UserError):
            make_video(bad)
    with pytest.raises(UserError):
        make_videos(0, 0)
