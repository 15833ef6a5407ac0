"""Hostile and odd inputs against the CLI, as a careless or malicious user would type them.

Every case asserts the contract of DESIGN.md: exit code 2, exactly one line on stderr, no
traceback, and nothing created or changed outside the place the command may write to.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

from mec_eval.cli import main
from mec_eval.runs import build_result, write_result

DIGITS = ["data.name=digits", "--quiet"]
TINY_PRETRAIN = ["data.name=digits", "optim.epochs=1", "optim.batch_size=32", "run.max_steps_per_epoch=1",
                 "model.proj_hidden=32", "model.proj_dim=32", "model.pred_hidden=16", "--quiet"]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with (size, mtime_ns): what a command may not have touched."""
    return {str(p.relative_to(root)): (p.stat().st_size if p.is_file() else -1, p.stat().st_mtime_ns)
            for p in root.rglob("*")}


def expect_user_error(capsys, argv: list[str], *needles: str) -> str:
    """Run the CLI; assert exit 2 and one stderr line (no traceback) holding every needle."""
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"exit {code}, stderr: {err!r}"
    assert len(lines) == 1, f"expected one line, got: {err!r}"
    assert "Traceback" not in err and lines[0].startswith("mec-eval: error:")
    for needle in needles:
        assert needle.lower() in lines[0].lower(), f"{needle!r} not in {lines[0]!r}"
    return lines[0]


@pytest.fixture(scope="module")
def canonical(tmp_path_factory) -> Path:
    """``c.pt``: a canonical random resnet_tiny checkpoint, as the issue builds it."""
    path = tmp_path_factory.mktemp("ckpt") / "c.pt"
    assert main(["convert", "--ckpt", "random:resnet_tiny", "--to", "canonical", "--out", str(path)]) == 0
    return path


def _copy(src: Path, dst: Path, edit=None) -> Path:
    data = bytearray(src.read_bytes())
    if edit is not None:
        data = edit(data)
    dst.write_bytes(bytes(data))
    return dst


def _flip_inside_tensor(path: Path) -> Path:
    """Flip 2,000 bytes inside the largest tensor member of a torch zip file (CRCs left as they were)."""
    with zipfile.ZipFile(path) as archive:
        member = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    start = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra)
    span = min(2000, member.file_size)
    data[start:start + span] = bytes(b ^ 0xFF for b in data[start:start + span])
    path.write_bytes(bytes(data))
    return path


# ----------------------------------------------------------------------------- checkpoints
def test_flipped_tensor_bytes_are_corrupt_not_a_result(canonical, tmp_path, capsys):
    flipped = _flip_inside_tensor(_copy(canonical, tmp_path / "flipped.pt"))
    runs = tmp_path / "runs"
    expect_user_error(capsys, ["run", "--task", "knn", "--ckpt", str(flipped), "--out", str(runs), *DIGITS],
                      "corrupt", "flipped.pt")
    assert not list(runs.rglob("result.json")) if runs.exists() else True


@pytest.mark.parametrize("edit, needle", [
    (lambda d: d[: len(d) // 2], "corrupt"),                 # truncated
    (lambda d: bytearray(os.urandom(4096)), ""),             # garbage
    (lambda d: bytearray(), ""),                             # empty file
    (lambda d: bytearray(b'{"format": "mec-eval/1"}'), ""),  # JSON named .pt
])
def test_broken_checkpoint_files(canonical, tmp_path, capsys, edit, needle):
    bad = _copy(canonical, tmp_path / "bad.pt", edit)
    before = snapshot(tmp_path)
    expect_user_error(capsys, ["run", "--task", "knn", "--ckpt", str(bad), "--out", str(tmp_path / "runs"), *DIGITS],
                      "bad.pt", needle)
    assert snapshot(tmp_path) == before


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = Path("/tmp/mec-eval-hostile-marker")


def test_pickle_payload_never_runs(tmp_path, capsys):
    MARKER.unlink(missing_ok=True)
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"state_dict": _Payload()}))
    expect_user_error(capsys, ["run", "--task", "knn", "--ckpt", str(evil), "--out", str(tmp_path / "r"), *DIGITS])
    assert not MARKER.exists()


def test_string_epoch_in_meta_is_refused_at_run_time(canonical, tmp_path, capsys):
    ckpt = torch.load(canonical, weights_only=True)
    ckpt["meta"]["epoch"] = "forty"
    torch.save(ckpt, tmp_path / "strepoch.pt")
    expect_user_error(capsys, ["run", "--task", "knn", "--ckpt", str(tmp_path / "strepoch.pt"),
                               "--out", str(tmp_path / "runs"), *DIGITS], "epoch")
    assert not (tmp_path / "runs").exists()


def test_ckpt_that_is_a_folder_says_so(tmp_path, capsys):
    (tmp_path / "folder.pt").mkdir()
    expect_user_error(capsys, ["run", "--task", "knn", "--ckpt", str(tmp_path / "folder.pt"),
                               "--out", str(tmp_path / "r"), *DIGITS], "folder")


def test_missing_ckpt(tmp_path, capsys):
    expect_user_error(capsys, ["run", "--task", "knn", "--ckpt", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "r"),
                               *DIGITS], "nope.pt")
    assert not (tmp_path / "r").exists()


def test_wrong_architecture_message_is_short(tmp_path, capsys):
    from mec_eval.checkpoints import make_canonical, save_canonical
    from mec_eval.models import build_backbone

    save_canonical(make_canonical("resnet50", build_backbone("resnet18").state_dict()), tmp_path / "r18as50.pt")
    line = expect_user_error(capsys, ["run", "--task", "knn", "--ckpt", str(tmp_path / "r18as50.pt"),
                                      "--out", str(tmp_path / "r"), *DIGITS])
    assert len(line) < 500


def test_detectron2_pkl_with_object_array(tmp_path, capsys):
    import numpy as np

    pkl = tmp_path / "model.pkl"
    pkl.write_bytes(pickle.dumps({"model": {"stem.conv1.weight": np.array([object()], dtype=object)},
                                  "__author__": "x"}))
    expect_user_error(capsys, ["convert", "--ckpt", str(pkl), "--to", "canonical", "--out", str(tmp_path / "o.pt")])
    assert not (tmp_path / "o.pt").exists()


def test_convert_does_not_overwrite_without_force(canonical, tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("precious")
    expect_user_error(capsys, ["convert", "--ckpt", str(canonical), "--to", "canonical", "--out", str(target)],
                      "notes.txt", "--force")
    assert target.read_text() == "precious"
    assert main(["convert", "--ckpt", str(canonical), "--to", "canonical", "--out", str(target), "--force"]) == 0
    assert torch.load(target, weights_only=True)["format"] == "mec-eval/1"


def test_convert_out_is_a_folder(canonical, tmp_path, capsys):
    (tmp_path / "dir").mkdir()
    expect_user_error(capsys, ["convert", "--ckpt", str(canonical), "--to", "canonical", "--out", str(tmp_path / "dir")],
                      "dir")


# ----------------------------------------------------------------------------- names and paths
@pytest.mark.parametrize("name", ["...pt", "....pt", "..pt", ".hidden.pt", "$\\foo{$.pt", "<img src=x onerror=alert(1)>.pt",
                                  "ckpt ñ 名前 🙂.pt", "x" * 240 + ".pt", "a|b`c.pt"])
def test_hostile_checkpoint_names_stay_inside_out(canonical, tmp_path, capsys, name):
    ckpt = _copy(canonical, tmp_path / name)
    runs = tmp_path / "sub" / "runs"
    assert main(["run", "--task", "knn", "--ckpt", str(ckpt), "--out", str(runs), *DIGITS]) == 0
    written = [Path(p) for p in capsys.readouterr().out.split()]
    assert len(written) == 1 and written[0].name == "result.json"
    assert runs.resolve() in written[0].resolve().parents
    outside = {p for p in tmp_path.rglob("*") if runs not in [p, *p.parents]}
    assert outside == {ckpt, tmp_path / "sub"}  # nothing written beside the checkpoint or above --out
    assert all(len(part) <= 255 for part in written[0].parts)


def test_hostile_task_file_name_stays_inside_out(tmp_path, capsys):
    from mec_eval.utils import resource_dir

    spec = tmp_path / "knn-...yaml"  # a variant of knn (result.json says task "knn-.."), dots and all
    spec.write_text((resource_dir("tasks") / "knn.yaml").read_text())
    runs = tmp_path / "a" / "runs"
    assert main(["run", "--task", str(spec), "--ckpt", "random:resnet_tiny", "--out", str(runs), *DIGITS]) == 0
    written = Path(capsys.readouterr().out.split()[0]).resolve()
    assert runs.resolve() in written.parents


def test_task_file_named_outside_the_vocabulary_is_refused_before_work(tmp_path, capsys):
    from mec_eval.utils import resource_dir

    spec = tmp_path / "...yaml"
    spec.write_text((resource_dir("tasks") / "knn.yaml").read_text())
    runs = tmp_path / "runs"
    expect_user_error(capsys, ["run", "--task", str(spec), "--ckpt", "random:resnet_tiny", "--out", str(runs),
                               *DIGITS], "name the YAML file after the task it runs")
    assert not runs.exists()


def test_symlink_inside_runs_pointing_outside_is_refused(tmp_path, capsys):
    runs, elsewhere = tmp_path / "runs", tmp_path / "elsewhere"
    runs.mkdir()
    elsewhere.mkdir()
    (runs / "knn").symlink_to(elsewhere)
    expect_user_error(capsys, ["run", "--task", "knn", "--ckpt", "random:resnet_tiny", "--out", str(runs), *DIGITS],
                      "outside")
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("make", [
    lambda t: (t / "file").write_text("x") and t / "file",
    lambda t: (t / "file").write_text("x") and t / "file" / "below",
])
def test_out_that_cannot_be_a_folder(tmp_path, capsys, make):
    out = make(tmp_path)
    before = snapshot(tmp_path)
    for argv in (["run", "--task", "knn", "--ckpt", "random:resnet_tiny", "--out", str(out), *DIGITS],
                 ["pretrain", "--config", "digits", "--out", str(out), *TINY_PRETRAIN],
                 ["suite", "--ckpt", "random:resnet_tiny", "--tasks", "knn", "--out", str(out), *DIGITS]):
        expect_user_error(capsys, argv, "file")
    assert snapshot(tmp_path) == before


# ----------------------------------------------------------------------------- config values
@pytest.mark.parametrize("override, needle", [
    ("optim.base_lr=-1", "optim.base_lr"), ("optim.batch_size=0", "optim.batch_size"),
    ("data.image_size=0", "data.image_size"), ("run.device=nosuch", "run.device"),
    ("optim.epochs=0", "optim.epochs"), ("optim.epochs=abc", "optim.epochs"), ("optim.base_lr=.nan", "optim.base_lr"),
    ("optim.nosuch=1", "optim.nosuch"), ("loss.name=nosuch", "nosuch"), ("data.name=../../x", "../../x"),
    ("optim.name=adam", "optim.name"), ("run.precision=fp8", "run.precision"),
])
def test_bad_pretrain_values_fail_before_any_write(tmp_path, capsys, override, needle):
    out = tmp_path / "pre"
    expect_user_error(capsys, ["pretrain", "--config", "digits", "--out", str(out), *TINY_PRETRAIN, override], needle)
    assert not out.exists()


@pytest.mark.parametrize("override, needle", [
    ("data.batch_size=0", "data.batch_size"), ("run.device=nosuch", "run.device"), ("knn.k=0", "knn.k"),
    ("knn.temperature=-1", "knn.temperature"), ("data.name=" + "z" * 300, "z" * 20),
])
def test_bad_task_values_fail_the_same_with_or_without_cache(tmp_path, capsys, override, needle):
    runs = tmp_path / "runs"
    for _ in range(2):  # the second time the features are cached: the check must not depend on it
        expect_user_error(capsys, ["run", "--task", "knn", "--ckpt", "random:resnet_tiny", "--out", str(runs),
                                   *DIGITS, override], needle)
        if not runs.exists():
            assert main(["run", "--task", "knn", "--ckpt", "random:resnet_tiny", "--out", str(runs), *DIGITS]) == 0
            capsys.readouterr()
    assert len(list(runs.rglob("result.json"))) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_gpu_is_refused_even_with_cached_features(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["run", "--task", "knn", "--ckpt", "random:resnet_tiny", "--out", str(runs), *DIGITS]) == 0
    expect_user_error(capsys, ["run", "--task", "knn", "--ckpt", "random:resnet_tiny", "--out", str(runs), *DIGITS,
                               "run.device=cuda", "--force"], "cuda")


@pytest.mark.parametrize("content, needle", [
    (b"", "empty"), (b"# only a comment\n", "empty"), (b"\xff\xfe\x00bad", "utf-8"), (b"- a\n- b\n", "mapping"),
    (b"data: !!python/object:os.system {}\n", ""), (b"data: [unclosed\n", "yaml"), (b"data:\n  name: 7: 8\n", ""),
])
def test_bad_yaml_config_files(tmp_path, capsys, content, needle):
    cfg = tmp_path / "bad.yaml"
    cfg.write_bytes(content)
    expect_user_error(capsys, ["pretrain", "--config", str(cfg), "--out", str(tmp_path / "o"), "--quiet"], needle)
    assert not (tmp_path / "o").exists()


def test_config_that_is_a_folder(tmp_path, capsys):
    (tmp_path / "cfg.yaml").mkdir()
    expect_user_error(capsys, ["pretrain", "--config", str(tmp_path / "cfg.yaml"), "--out", str(tmp_path / "o")],
                      "folder")


def test_malformed_overrides(capsys, tmp_path):
    expect_user_error(capsys, ["run", "--task", "knn", "--ckpt", "random:resnet_tiny", "--out", str(tmp_path), "novalue"])
    expect_user_error(capsys, ["run", "--task", "knn", "--ckpt", "random:resnet_tiny", "--out", str(tmp_path), "a..b=1"])


def test_corrupt_jpeg_in_image_folder_names_the_file(tmp_path, capsys):
    from mec_eval.data.fixtures import write_imagefolder_fixture

    root = write_imagefolder_fixture(tmp_path / "imgs", n_classes=2, n_train=3, n_val=2, image_size=16)
    victim = sorted((root / "train").rglob("*.png"))[1]
    victim.write_bytes(victim.read_bytes()[:40])
    expect_user_error(capsys, ["run", "--task", "knn", "--ckpt", "random:resnet_tiny", "--out", str(tmp_path / "runs"),
                               "data.name=imagefolder", f"data.root={root}", "--quiet"], victim.name)
    assert not (tmp_path / "runs").exists()


def test_garbage_state_in_a_trained_run_folder(tmp_path, capsys):
    runs = tmp_path / "runs"
    argv = ["run", "--task", "semi-10pct", "--ckpt", "random:resnet_tiny", "--out", str(runs), *DIGITS,
            "optim.epochs=1"]
    assert main(argv) == 0
    result = Path(capsys.readouterr().out.split()[0])
    result.unlink()
    (result.parent / "state.pt").write_bytes(b"garbage" * 10)
    expect_user_error(capsys, argv, "state.pt")


def test_truncated_last_pt_in_own_pretrain_folder(tmp_path, capsys):
    out = tmp_path / "pre"
    assert main(["pretrain", "--config", "digits", "--out", str(out), *TINY_PRETRAIN]) == 0
    last = out / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    line = expect_user_error(capsys, ["pretrain", "--config", "digits", "--out", str(out), *TINY_PRETRAIN,
                                      "optim.epochs=2"], "last.pt", "delete")
    assert "download" not in line


def test_failed_pretrain_leaves_no_out_folder(tmp_path, capsys):
    out = tmp_path / "pre"
    expect_user_error(capsys, ["pretrain", "--config", "digits", "--out", str(out), *TINY_PRETRAIN,
                               "optim.batch_size=100000"], "batch_size")
    assert not out.exists()


# ----------------------------------------------------------------------------- reports
def _result(root: Path, name: str = "ckpt", **changes) -> Path:
    result = build_result(task="knn", dataset="digits", protocol="paper",
                          checkpoint={"name": name, "path": "/x.pt", "sha256": "0" * 64, "layout": "mec-eval"},
                          metrics={"top1": 50.0, "top5": 90.0}, primary="top1", higher_is_better=True, config={},
                          seed=0, started="2026-01-01T00:00:00+00:00", duration_s=1.0)
    result.update(changes)
    return write_result(root / "knn" / name / "h", result)


@pytest.mark.parametrize("mutate", [
    lambda p: p.write_text("[1, 2, 3]"),
    lambda p: p.write_text(p.read_text().replace('"top1": 50.0', '"top1": "abc"')),
    lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "checkpoint": "just-a-string"})),
    lambda p: p.write_text(json.dumps({k: v for k, v in json.loads(p.read_text()).items() if k != "task"})),
    lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "metrics": {}})),
    lambda p: p.write_text(p.read_text()[:30]),
    lambda p: p.write_bytes(b"\xff\xfe garbage"),
])
def test_bad_result_files_are_named_not_tracebacks(tmp_path, capsys, mutate):
    runs = tmp_path / "runs"
    _result(runs, "good")
    bad = _result(runs, "bad")
    mutate(bad)
    html = tmp_path / "rep" / "r.html"
    expect_user_error(capsys, ["report", "--runs", str(runs), "--out", str(html)], "result.json")
    assert not html.exists()
    capsys.readouterr()
    assert main(["report", "--runs", str(runs), "--out", str(html), "--skip-bad"]) == 0
    assert str(bad.parent.parent.name) in capsys.readouterr().err and html.is_file()


def test_only_file_without_metrics_is_not_called_missing(tmp_path, capsys):
    runs = tmp_path / "runs"
    bad = _result(runs)
    bad.write_text(json.dumps({**json.loads(bad.read_text()), "metrics": {}}))
    line = expect_user_error(capsys, ["report", "--runs", str(runs), "--out", str(tmp_path / "r.html")])
    assert "no result.json found" not in line


def test_mathtext_and_markup_names_render(tmp_path, capsys):
    runs = tmp_path / "runs"
    for name in ("$\\foo{$", "<script>alert(1)</script>", "a|b"):
        _result(runs, name)
    html = tmp_path / "r.html"
    assert main(["report", "--runs", str(runs), "--out", str(html), "--pdf", "--markdown"]) == 0
    md = html.with_suffix(".md").read_text()
    assert "<script>" not in md and "<script>" not in html.read_text()
    assert html.with_suffix(".pdf").is_file()
    for table in md.split("\n\n"):  # an unescaped | in a name would add a column to its row
        rows = [line for line in table.splitlines() if line.startswith("|")]
        assert len({len(re.findall(r"(?<!\\)\|", row)) for row in rows}) <= 1, table


def test_report_csv_onto_a_file_writes_nothing(tmp_path, capsys):
    runs = tmp_path / "runs"
    _result(runs)
    (tmp_path / "csv").write_text("x")
    html = tmp_path / "r.html"
    expect_user_error(capsys, ["report", "--runs", str(runs), "--out", str(html), "--csv", str(tmp_path / "csv")], "csv")
    assert not html.exists()


def test_report_out_is_a_folder(tmp_path, capsys):
    runs = tmp_path / "runs"
    _result(runs)
    (tmp_path / "r.html").mkdir()
    expect_user_error(capsys, ["report", "--runs", str(runs), "--out", str(tmp_path / "r.html")], "r.html")


def test_report_missing_runs_folder(tmp_path, capsys):
    expect_user_error(capsys, ["report", "--runs", str(tmp_path / "nope"), "--out", str(tmp_path / "r.html")], "nope")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- dispatch and start-up
def test_suite_slurm_without_sbatch(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    runs = tmp_path / "runs"
    expect_user_error(capsys, ["suite", "--ckpt", "random:resnet_tiny", "--tasks", "knn", "--out", str(runs),
                               "--executor", "slurm", *DIGITS], "sbatch")
    assert not runs.exists()


def _fresh_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.mark.parametrize("argv", [["list", "tasks"], ["list", "configs"], ["list", "checkpoints"], ["--help"],
                                  ["run", "--help"],
                                  ["run", "--task", "nosuch", "--ckpt", "random:resnet_tiny"],
                                  ["run", "--task", "knn", "--ckpt", "random:resnet_tiny", "knn.kk=3"],
                                  ["pretrain", "--config", "nosuch"], ["pretrain", "--config", "digits", "optim.epochs=-1"]])
def test_no_torch_import_for_listing_help_and_config_errors(argv, tmp_path):
    code = ("import sys\nfrom mec_eval.cli import main\ntry:\n    rc = main(%r)\nexcept SystemExit as e:\n    rc = e.code\n"
            "print('TORCH' if 'torch' in sys.modules else 'NOTORCH', rc)") % (argv,)
    proc = _fresh_python(code, tmp_path)
    assert proc.stdout.split()[-2:] in (["NOTORCH", "0"], ["NOTORCH", "2"]), proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written where it ran


def test_out_with_a_name_too_long_for_the_file_system(tmp_path, capsys):
    out = tmp_path / ("n" * 300) / "runs"
    expect_user_error(capsys, ["run", "--task", "knn", "--ckpt", "random:resnet_tiny", "--out", str(out), *DIGITS],
                      "too long")
    assert list(tmp_path.iterdir()) == []


def test_unicode_out_folder_works(tmp_path, capsys):
    out = tmp_path / "résultats 実験 $x$"
    assert main(["run", "--task", "knn", "--ckpt", "random:resnet_tiny", "--out", str(out), *DIGITS]) == 0
    assert out.resolve() in Path(capsys.readouterr().out.strip().splitlines()[0]).resolve().parents


def test_read_only_out_folder(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root and tmpfs mounts for a read-only folder")
    try:
        for argv in (["run", "--task", "knn", "--ckpt", "random:resnet_tiny", "--out", str(ro / "runs"), *DIGITS],
                     ["convert", "--ckpt", "random:resnet_tiny", "--to", "canonical", "--out", str(ro / "c.pt")]):
            expect_user_error(capsys, argv, str(ro))
        assert list(ro.iterdir()) == []
    finally:
        subprocess.run(["umount", str(ro)], check=False)


@pytest.mark.parametrize("victim, content", [("meta.json", b"{not json"), ("features.npy", b"\x93NUMPY garbage"),
                                             ("meta.json", b'{"rows": 3, "classes": []}')])
def test_corrupt_feature_cache_is_named(tmp_path, capsys, victim, content):
    runs = tmp_path / "runs"
    argv = ["run", "--task", "knn", "--ckpt", "random:resnet_tiny", "--out", str(runs), *DIGITS]
    assert main(argv) == 0
    capsys.readouterr()
    entry = next(p.parent for p in (runs / ".cache" / "features").rglob("meta.json") if "train" in p.parent.name)
    (entry / victim).write_bytes(content)
    expect_user_error(capsys, [*argv, "--force"], entry.name, "delete")


def test_no_announcement_before_a_one_line_error_without_quiet(tmp_path, capsys):
    # Not quiet: the "run knn on ... -> folder" header would print before the error if it were eager.
    expect_user_error(capsys, ["run", "--task", "knn", "--ckpt", "random:resnet_tiny", "--out", str(tmp_path / "r"),
                               "data.name=imagefolder", f"data.root={tmp_path / 'none'}"], "expected layout")
    assert not (tmp_path / "r").exists()


def test_feature_cache_entry_is_extracted_once_under_concurrency(tmp_path, monkeypatch):
    import threading

    from mec_eval.checkpoints import load_encoder
    from mec_eval.config import EvalDataConfig, EvalRunConfig
    from mec_eval.tasks import features

    calls, real = [], features._extract_split

    def slow_extract(*args, **kwargs):
        calls.append(threading.get_ident())
        time.sleep(0.5)  # long enough for the second thread to reach the lock
        return real(*args, **kwargs)

    monkeypatch.setattr(features, "_extract_split", slow_extract)
    encoder, data, run = load_encoder("random:resnet_tiny"), EvalDataConfig(name="digits"), EvalRunConfig(device="cpu")
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        features.cached_features(encoder, data, run, "test", tmp_path / "cache", quiet=True))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(results) == 2
    assert (results[0].features == results[1].features).all()
    assert not (tmp_path / "cache" / ".locks").exists()


def test_forced_layout_and_arch_flags(canonical, tmp_path, capsys):
    runs = tmp_path / "runs"
    expect_user_error(capsys, ["run", "--task", "knn", "--ckpt", str(canonical), "--layout", "solo-lern",
                               "--out", str(runs), *DIGITS], "solo-learn")
    expect_user_error(capsys, ["run", "--task", "knn", "--ckpt", "random:resnet_tiny", "--arch", "resnet50",
                               "--out", str(runs), *DIGITS], "resnet50")
    expect_user_error(capsys, ["convert", "--ckpt", str(canonical), "--layout", "moco", "--to", "canonical",
                               "--out", str(tmp_path / "o.pt")], "moco")
    assert not runs.exists() and not (tmp_path / "o.pt").exists()
    assert main(["run", "--task", "knn", "--ckpt", str(canonical), "--layout", "mec-eval", "--out", str(runs),
                 *DIGITS]) == 0
    forced = json.loads(Path(capsys.readouterr().out.strip()).read_text())
    assert forced["checkpoint"]["layout"] == "mec-eval"
    assert main(["run", "--task", "knn", "--ckpt", str(canonical), "--out", str(runs), *DIGITS]) == 0
    detected = json.loads(Path(capsys.readouterr().out.strip()).read_text())
    assert detected["metrics"] == forced["metrics"]  # the same weights, however they were read
    assert len(list(runs.rglob("result.json"))) == 2  # forced and detected readings are separate runs


# ----------------------------------------------------------------------------- grids, status, watch, profiles
SUITE = ["suite", "--ckpt", "random:resnet_tiny", "--tasks", "knn"]


@pytest.mark.parametrize("extra, needle", [
    (["--ckpt", ""], "--ckpt is empty"),
    (["--ckpt", ",,"], "--ckpt is empty"),
    (["--watch", "."], "exactly one"),
    (["--every", "2"], "--every applies to --watch"),
    (["--every", "0"], "--every"),
    (["--parallel", "2"], "--parallel applies to"),
    (["--executor", "local-parallel", "--parallel", "0"], "--parallel"),
    (["--executor", "local-parallel", "--parallel", "two"], "integer"),
    (["--executor", "local-parallel", "--parallel", "99999999999999999999"], "--parallel"),
    (["--poll", "nan"], "--poll"),
    (["--force", "--retry-failed"], "choose one"),
    (["--cluster", "eval-1gpu"], "apply to --executor slurm or local-parallel"),
    (["--executor", "local-parallel", "--cluster", "eval-1gp"], "did you mean eval-1gpu"),
    (["--executor", "local-parallel", "--cluster", ".."], "no cluster profile named '..'"),
    (["--executor", "local-parallel", "--cluster", "$x$"], "$x$"),
    (["--executor", "local-parallel", "--cluster", "<b>x</b>.yaml"], "not found"),
    (["--executor", "local-parallel", "--cluster", "é" * 300], "no cluster profile"),
    (["--executor", "local-parallel", "--cluster-set", "gpus_per_nod=2"], "cluster.gpus_per_node"),
    (["--executor", "local-parallel", "--cluster-set", "timeout_min=ten"], "cluster.timeout_min"),
    (["--executor", "local-parallel", "--cluster-set", "timeout_min=-5"], "cluster.timeout_min"),
    (["--executor", "local-parallel", "--cluster-set", "$x$"], "key=value"),
    (["--executor", "local-parallel", "--cluster-set", "partition=a\nb"], "cluster.partition"),
    (["--executor", "local-parallel", "--cluster-set", "qos=分区 x"], "cluster.qos"),
    (["--executor", "local-parallel", "--cluster", "multinode-4x8gpu"], "nodes=4"),
])
def test_suite_dispatch_flags(tmp_path, capsys, extra, needle):
    before = snapshot(tmp_path)
    argv = SUITE + ["--out", str(tmp_path / "runs"), *DIGITS, *extra]
    if "--watch" in extra:
        argv.remove("--tasks")
    expect_user_error(capsys, argv, needle)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("make, needle", [
    (lambda t: t / "missing", "does not exist"),
    (lambda t: (t / "f").write_text("x") and t / "f", "is a file"),
    (lambda t: t, "not a pre-training output folder"),
    (lambda t: t / ("ü" * 250), "too long"),
])
def test_watch_folder_errors(tmp_path, capsys, make, needle):
    target = make(tmp_path)
    before = snapshot(tmp_path)
    expect_user_error(capsys, ["suite", "--watch", str(target), "--tasks", "knn", "--out", str(tmp_path / "runs"),
                               *DIGITS], needle)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("make, needle", [
    (lambda t: t / "missing", "does not exist"),
    (lambda t: (t / "f.json").write_text("{}") and t / "f.json", "is a file"),
    (lambda t: t / "<i>$x$</i>", "does not exist"),
])
def test_status_argument_errors(tmp_path, capsys, make, needle):
    target = make(tmp_path)
    before = snapshot(tmp_path)
    expect_user_error(capsys, ["status", str(target)], needle)
    assert snapshot(tmp_path) == before


def test_status_of_damaged_records_is_a_table(tmp_path, capsys):
    run = tmp_path / "runs" / "knn" / "c" / "h"
    run.mkdir(parents=True)
    (run / "job.json").write_text("{not json")
    (run / "failed.json").write_text(json.dumps({"error": "x", "tail": ["<script>x</script>", "\u202etxt.exe\x1b[2J"]}))
    assert main(["status", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert " failed " in out and "<script>x</script>" in out and "txt.exe" in out
    assert "\u202e" not in out and "\x1b" not in out  # no terminal control from a record


def test_pretrain_dispatch_errors_leave_nothing(tmp_path, capsys, monkeypatch):
    out = tmp_path / "pre"
    expect_user_error(capsys, ["pretrain", "--config", "digits", "--out", str(out), "--executor", "local-parallel",
                               "--cluster", "node-8gpu", "--cluster-set", "nodes=2", *TINY_PRETRAIN], "nodes=2")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    expect_user_error(capsys, ["pretrain", "--config", "digits", "--out", str(out), "--executor", "slurm",
                               *TINY_PRETRAIN], "sbatch")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", [
    ["suite", "--help"], ["status", "--help"], ["pretrain", "--help"],
    ["status", "nowhere"],
    ["suite", "--ckpt", "random:resnet_tiny", "--executor", "local-parallel", "--cluster", "nosuch"],
    ["suite", "--ckpt", "random:resnet_tiny", "--executor", "slurm", "--cluster", "eval-1gpu"],  # no sbatch here
    ["suite", "--watch", "nowhere", "--tasks", "knn"],
    ["pretrain", "--config", "digits", "--executor", "local-parallel", "--cluster-set", "gpu=1"],
])
def test_no_torch_import_for_dispatch_help_status_and_profile_errors(argv, tmp_path):
    code = ("import sys, os\nos.environ['PATH'] = '/nonexistent'\nfrom mec_eval.cli import main\ntry:\n"
            f"    rc = main({argv!r})\nexcept SystemExit as e:\n    rc = e.code\n"
            "print('TORCH' if 'torch' in sys.modules else 'NOTORCH', rc)")
    proc = _fresh_python(code, tmp_path)
    assert proc.stdout.split()[-2:] in (["NOTORCH", "0"], ["NOTORCH", "2"]), proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_status_reads_a_runs_folder_without_torch(tmp_path):
    run = tmp_path / "runs" / "knn" / "c" / "h"
    run.mkdir(parents=True)
    (run / "job.json").write_text(json.dumps({"task": "knn", "checkpoint": "c", "job_id": "7_1"}))
    code = ("import sys\nfrom mec_eval.cli import main\nrc = main(['status', 'runs'])\n"
            "print('TORCH' if 'torch' in sys.modules else 'NOTORCH', rc)")
    proc = _fresh_python(code, tmp_path)
    assert "pending" in proc.stdout and "7_1" in proc.stdout
    assert proc.stdout.split()[-2:] == ["NOTORCH", "0"], proc.stdout + proc.stderr
