import json
import os
import stat

import pytest

from mec_eval.runs import build_result, finished_result, run_dir, write_result
from mec_eval.utils import atomic_write_text, sha256_file


def _result(**kw):
    base = dict(task="knn", dataset="digits", protocol="paper",
                checkpoint={"name": "x", "path": "random:resnet_tiny", "sha256": None},
                metrics={"top1": 91.5, "top5": 99.0}, primary="top1", higher_is_better=True,
                config={"a": 1}, seed=0, started="2026-01-01T00:00:00+00:00", duration_s=1.5)
    base.update(kw)
    return build_result(**base)


def test_result_matches_schema_and_round_trips(tmp_path, validate_result):
    folder = run_dir(tmp_path, "knn", "my ckpt/last", "abc123")
    assert folder.parts[-2] == "my_ckpt_last"
    assert finished_result(folder) is None
    path = write_result(folder, _result())
    validate_result(path)
    assert finished_result(folder)["metrics"]["top1"] == 91.5


def test_primary_must_be_a_metric():
    with pytest.raises(ValueError, match="primary"):
        _result(primary="top3")


def test_atomic_write_keeps_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "result.json"
    atomic_write_text(target, json.dumps({"v": 1}))

    def boom(*_):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(target, json.dumps({"v": 2}))
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temp file left behind


def test_sha256_known_value(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_atomic_writes_get_the_umask_mode_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "shared.html", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "shared.html").stat().st_mode) == 0o644


def test_progress_bars_are_off_when_stderr_is_not_a_terminal(monkeypatch):
    import io
    import sys

    from mec_eval.log import progress

    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a redirected stderr: no isatty()
    bar = progress(range(3), total=3, desc="x")
    assert list(bar) == [0, 1, 2] and bar.disable
    assert sys.stderr.getvalue() == ""  # no carriage-return updates in the log file


def test_safe_name_never_leaves_its_folder():
    from mec_eval.runs import MAX_NAME, safe_name

    assert safe_name("..") == "unnamed" and safe_name("...") == "unnamed" and safe_name("") == "unnamed"
    assert safe_name("a/../b") == "a_._b" and safe_name(".hidden") == "hidden" and safe_name("x..y") == "x.y"
    long_a, long_b = "a" * 300, "a" * 299 + "b"
    assert len(safe_name(long_a)) <= MAX_NAME and safe_name(long_a) != safe_name(long_b)
    assert safe_name("mec-last") == "mec-last"  # ordinary names unchanged (existing run folders stay valid)
