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


# The hard options (palette, distractors, lighting) draw from their own generator: same motion, same masks.
HARD_KW = {"palette": "shared", "distractors": 4, "lighting": 0.0}
ALL_OPTIONS = {"palette": "shared", "distractors": 4, "lighting": 0.25, "palette_jitter": 0}


def _annotations_equal(a, b) -> bool:
    return all((x is None and y is None) or (x is not None and y is not None and x.box == y.box
                                             and np.array_equal(x.mask, y.mask) and x.visibility == y.visibility)
               for ta, tb in zip(a.tracks, b.tracks) for x, y in zip(ta.frames, tb.frames))


def test_hard_options_keep_motion_masks_and_determinism():
    from mec_eval.data.shapes_video import HARD
    assert HARD == HARD_KW
    for seed in (0, 4):
        easy, hard, again = make_video(seed, n_frames=8), make_video(seed, n_frames=8, **ALL_OPTIONS), \
            make_video(seed, n_frames=8, **ALL_OPTIONS)
        assert _annotations_equal(easy, hard) and [t.kind for t in easy.tracks] == [t.kind for t in hard.tracks]
        assert all(np.array_equal(x, y) for x, y in zip(hard.frames, again.frames))
        assert not any(np.array_equal(x, y) for x, y in zip(easy.frames, hard.frames))
    explicit = make_video(2, n_frames=4, palette="distinct", distractors=0, lighting=0.0)
    assert all(np.array_equal(x, y) for x, y in zip(make_video(2, n_frames=4).frames, explicit.frames))


def _object_colours(video, t=0):
    """Median colour of each object's interior pixels (eroded mask: no antialiased edge) in frame t."""
    from scipy.ndimage import binary_erosion
    colours = []
    for track in video.tracks:
        entry = track.frames[t]
        inner = binary_erosion(entry.mask, iterations=2) if entry is not None else None
        if inner is not None and inner.sum() >= 10:
            colours.append(np.median(video.frames[t][inner].astype(float), axis=0))
    return np.array(colours)


def test_shared_palette_leaves_only_shape_to_tell_objects_apart():
    spreads = {"shared": [], "distinct": []}
    for seed in range(6):
        for palette in spreads:
            colours = _object_colours(make_video(seed, n_frames=2, palette=palette))
            if len(colours) >= 2:
                spreads[palette].append(np.abs(colours[:, None] - colours[None]).max())
    # Shared: +-12 jitter per channel (<= 24 apart) plus pixel noise; distinct: hues spread around the wheel.
    assert len(spreads["shared"]) >= 4 and max(spreads["shared"]) <= 30
    assert min(spreads["distinct"]) > 60


def test_palette_jitter_zero_paints_one_colour_and_the_default_is_twelve():
    # The +-12 default is what today's hard videos hold; 0 paints every object in exactly the video's colour
    # (the medians of noisy interiors then agree to a grey level or two), so colour carries no identity at all.
    default, explicit = make_video(3, n_frames=2, palette="shared"), make_video(3, n_frames=2, palette="shared",
                                                                                  palette_jitter=12)
    assert all(np.array_equal(x, y) for x, y in zip(default.frames, explicit.frames))
    spreads = []
    for seed in range(6):
        colours = _object_colours(make_video(seed, n_frames=2, palette="shared", palette_jitter=0))
        if len(colours) >= 2:
            spreads.append(np.abs(colours[:, None] - colours[None]).max())
    assert len(spreads) >= 4 and max(spreads) <= 2
    wide = _object_colours(make_video(1, n_frames=2, palette="shared", palette_jitter=64))
    assert np.abs(wide[:, None] - wide[None]).max() > 30


def test_distractors_move_behind_the_objects():
    from scipy.ndimage import binary_erosion
    plain, busy = make_video(1, n_frames=10), make_video(1, n_frames=10, distractors=6)
    changed = [np.any(p != b, axis=2) for p, b in zip(plain.frames, busy.frames)]
    for t, diff in enumerate(changed):
        for track in plain.tracks:
            entry = track.frames[t]
            if entry is not None:  # drawn behind: an object's interior is never touched
                assert not diff[binary_erosion(entry.mask, iterations=1)].any()
    assert all(d.mean() > 0.01 for d in changed) and not np.array_equal(changed[0], changed[-1])


def test_lighting_drifts_global_brightness():
    plain, lit = make_video(2, n_frames=20), make_video(2, n_frames=20, lighting=0.4)
    ratio = np.array([(b.astype(float).mean() + 1) / (a.astype(float).mean() + 1)
                      for a, b in zip(plain.frames, lit.frames)])
    assert ratio.std() > 0.05 and np.abs(np.diff(ratio)).max() < 0.3  # drifts, smoothly


def test_occlusion_and_leaving_hold_in_the_hard_setting():
    occluded = 0
    for seed in range(6):
        v = make_video(seed, n_frames=24, size=(48, 64), **HARD_KW)
        occluded += any(e is not None and e.visibility < 0.9 and 1 < e.box[0] and e.box[2] < 63
                        and 1 < e.box[1] and e.box[3] < 47 for t in v.tracks for e in t.frames)
    assert occluded >= 3


@pytest.mark.parametrize("kw", [{"palette": "rainbow"}, {"palette": None}, {"distractors": -1},
                                {"distractors": 17}, {"distractors": 2.5}, {"distractors": True},
                                {"lighting": -0.1}, {"lighting": 0.6}, {"lighting": "0.2"}, {"lighting": True},
                                {"palette_jitter": -1}, {"palette_jitter": 65}, {"palette_jitter": 2.5},
                                {"palette_jitter": True}, {"palette_jitter": "3"}])
def test_bad_hard_options(kw):
    with pytest.raises(UserError):
        make_video(0, n_frames=2, **kw)
