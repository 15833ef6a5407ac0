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


@pytest.mark.parametrize("change, message", [
    ({"task": "knnn"}, "unknown task 'knnn'; did you mean knn?"),
    ({"dataset": "digts"}, "unknown dataset 'digts'; did you mean digits, dtd?"),
    ({"metrics": {"top1": 91.5, "top3": 99.0}}, "task knn has no metric 'top3'; did you mean top5, top1? (knn writes: top1, top5)"),
    ({"task": "knn-200", "metrics": {"top1": 1.0, "AP": 2.0}}, "task knn-200 (a variant of knn) has no metric 'AP'"),
])
def test_write_result_refuses_names_outside_the_vocabulary_and_writes_nothing(tmp_path, change, message):
    result = _result(**change)
    with pytest.raises(ValueError) as err:
        write_result(tmp_path / "run", result)
    assert message in str(err.value) and "a task adapter bug" in str(err.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r.pop("started"), "'started' is a required property"),
    (lambda r: r.update(seed="zero"), "seed: 'zero' is not of type 'integer'"),
    (lambda r: r["checkpoint"].pop("name"), "checkpoint: 'name' is a required property"),
    (lambda r: r["metrics"].update(top5="99"), "metrics.top5: '99' is not of type 'number'"),
    (lambda r: r.update(primary="top3"), "primary metric 'top3' is not among the metrics ['top1', 'top5']"),
])
def test_write_result_refuses_schema_violations_and_writes_nothing(tmp_path, mutate, message):
    result = _result()
    mutate(result)
    with pytest.raises(ValueError, match="refusing to write result.json of task 'knn'") as err:
        write_result(tmp_path, result)
    assert message in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_a_task_variant_writes_and_the_result_reads_back(tmp_path, validate_result):
    path = write_result(tmp_path / "run", _result(task="semi-1pct-mec"))
    assert validate_result(path)["task"] == "semi-1pct-mec"


def test_the_schema_is_package_data_and_equals_the_shared_one():
    from importlib import resources
    from pathlib import Path

    import jsonschema

    from mec_eval.runs import RESULT_SCHEMA, result_schema

    packaged = resources.files("mec_eval").joinpath(RESULT_SCHEMA)
    assert packaged.is_file()
    jsonschema.validators.validator_for(result_schema()).check_schema(result_schema())
    shared = Path(os.environ.get("MEC_EVAL_SHARED", "")) / "schemas" / "result.schema.json"
    if not shared.is_file():
        pytest.skip(f"no shared schema at {shared}")
    assert packaged.read_bytes() == shared.read_bytes()


@pytest.mark.slow
def test_a_built_wheel_ships_the_schema(tmp_path):
    """Build a non-editable wheel from a copy of the sources and look for the schema inside it."""
    import shutil
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    pytest.importorskip("setuptools")
    repo = Path(__file__).resolve().parents[2]
    src = tmp_path / "src"
    shutil.copytree(repo / "mec_eval", src / "mec_eval", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo / name, src / name)
    for folder in ("configs", "tasks", "slurm", "reports/published"):  # what the data-files globs pick up
        shutil.copytree(repo / folder, src / folder)
    (src / "checkpoints").mkdir()
    shutil.copy(repo / "checkpoints/manifest.yaml", src / "checkpoints/manifest.yaml")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(src)], check=True, capture_output=True, timeout=300)
    wheel, = (tmp_path / "dist").glob("mec_eval-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("mec_eval/schemas/result.schema.json") == (repo / "mec_eval/schemas/result.schema.json"
                                                                      ).read_bytes()


def test_folder_lock_retries_when_a_releasing_holder_removes_the_folder_during_mkdir(tmp_path, monkeypatch):
    from pathlib import Path as _Path

    from mec_eval.runs import folder_lock

    real_mkdir, calls = _Path.mkdir, []

    def racing_mkdir(self, *args, **kwargs):  # pathlib's outcome when the folder vanishes after EEXIST
        calls.append(self)
        if len(calls) == 1:
            raise FileExistsError(17, "File exists", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(_Path, "mkdir", racing_mkdir)
    lock = tmp_path / ".locks" / "a.lock"
    with folder_lock(lock):
        assert lock.is_file()
    assert len(calls) >= 2
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError):  # a real file where the folder should be is still an error
        with folder_lock(tmp_path / "file" / "a.lock"):
            pass
