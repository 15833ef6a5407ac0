"""Reports from hostile inputs: bad result.json files, names with mathtext or markup, unwritable outputs,
and failures in the middle of writing (the report's files are written as a set or not at all)."""
from __future__ import annotations

import errno
import io
import json
import os
import re
from pathlib import Path

import pytest
from matplotlib import rc_context

from mec_eval.report import build_report, collect_results, output
from mec_eval.report.document import build_document
from mec_eval.report.export import render_markdown
from mec_eval.report.html import render_html
from mec_eval.report.pdf import render_pdf
from mec_eval.utils import UserError

TASKS = [("linear", "imagenet", "top1", 70.0), ("semi-1pct", "imagenet", "top1", 50.0),
         ("voc07", "pascal-voc", "AP", 45.0)]
HOSTILE = ["$\\foo{$", "$x$", "a_b^c", "<script>alert(1)</script>", "<img src=x onerror=alert(1)>",
           "a|b`c`", "line\nbreak", "../../etc/passwd", "dir/name", "名前 🙂 naïve", "n" * 300]


def result(name: str, task: str = "linear", dataset: str = "imagenet", metrics: dict | None = None, **ckpt) -> dict:
    """A schema-1 result dict (built by hand: no torch import, no git call)."""
    metrics = metrics or {"top1": 70.0}
    return {"schema": 1, "task": task, "dataset": dataset, "protocol": "paper",
            "checkpoint": {"name": name, "path": f"/ckpts/{len(name)}.pt", "sha256": "a" * 64, "layout": "mec-eval",
                           "method": "mec", "epoch": 40, **ckpt},
            "metrics": metrics, "primary": next(iter(metrics)), "higher_is_better": True, "config": {}, "seed": 0,
            "started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T00:01:00+00:00", "duration_s": 60.0}


def write(root: Path, folder: str, data: dict | str | bytes) -> Path:
    path = root / folder / "result.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def three_tasks(root: Path, names: list[str], validate=None, **ckpt) -> Path:
    """Every name on the three image tasks (a drawable radar chart), one folder per (task, name)."""
    for i, name in enumerate(names):
        for task, dataset, metric, value in TASKS:
            data = result(name, task, dataset, {metric: value + i}, **ckpt)
            if validate is not None:
                validate(data)
            write(root, f"{task}/{i}", data)
    return root


def _without(key: str):
    def mutate(data: dict) -> dict:
        return {k: v for k, v in data.items() if k != key}
    return mutate


BAD = [
    ("list", "[1, 2, 3]", "the file holds a list"),
    ("string-metric", lambda d: {**d, "metrics": {"top1": "abc"}}, "metrics.top1 is not a number"),
    ("null-metric", lambda d: {**d, "metrics": {"top1": None}}, "metrics.top1 is not a number"),
    ("nan-string", lambda d: {**d, "metrics": {"top1": "NaN"}}, "metrics.top1 is not a number"),
    ("nan-literal", '{"metrics": {"top1": NaN}}', "metrics.top1 is not a finite number"),
    ("string-checkpoint", lambda d: {**d, "checkpoint": "just-a-string"}, "checkpoint is a string"),
    ("no-task", _without("task"), "task is missing"),
    ("no-metrics", _without("metrics"), "metrics is missing"),
    ("empty-metrics", lambda d: {**d, "metrics": {}}, "metrics is empty"),
    ("nameless", lambda d: {**d, "checkpoint": {"path": "/x.pt"}}, "checkpoint.name is missing"),
    ("seed-text", lambda d: {**d, "seed": "zero"}, "seed is a string"),
    ("latin1", b"\xff\xfe garbage", "is not UTF-8"),
    ("truncated", json.dumps(result("t"))[:30], "is not valid JSON"),
]


def _bad_file(root: Path, mutate) -> Path:
    if isinstance(mutate, (str, bytes)):
        data = mutate
    else:
        data = mutate(result("bad"))
    if isinstance(data, str) and "NaN" in data:       # keep the other fields valid
        data = json.dumps(result("bad")).replace('"top1": 70.0', '"top1": NaN')
    return write(root, "linear/bad", data)


@pytest.mark.parametrize("case,mutate,reason", BAD, ids=[b[0] for b in BAD])
def test_bad_result_is_a_user_error_naming_file_and_problem(tmp_path, case, mutate, reason):
    write(tmp_path, "linear/good", result("good"))
    bad = _bad_file(tmp_path, mutate)
    with pytest.raises(UserError) as err:
        collect_results([tmp_path])
    message = str(err.value)
    assert message.startswith(f"{bad}: ") and reason in message and "--skip-bad" in message
    assert "\n" not in message


def test_skip_bad_names_each_file_on_one_stderr_line_and_continues(tmp_path, capsys):
    write(tmp_path, "linear/good", result("good"))
    bad_a = _bad_file(tmp_path, BAD[1][1])
    bad_b = write(tmp_path, "linear/other", "[]")
    long = collect_results([tmp_path], skip_bad=True)
    assert set(long["checkpoint"]) == {"good"}
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(line.startswith("mec-eval: warning: skipped ") for line in lines)
    assert str(bad_a) in lines[0] and "metrics.top1 is not a number" in lines[0]
    assert str(bad_b) in lines[1] and "holds a list" in lines[1]


def test_all_bad_skipped_is_said_so_and_no_file_is_not_missing(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match=f"no result.json found under {empty}"):
        collect_results([empty])
    runs = tmp_path / "runs"
    write(runs, "a", "[]")
    write(runs, "b", {"schema": 1})
    with pytest.raises(UserError) as err:
        collect_results([runs], skip_bad=True)
    assert "all 2 result.json files" in str(err.value) and "skipped" in str(err.value)
    assert "no result.json found" not in str(err.value)
    assert len(capsys.readouterr().err.splitlines()) == 2
    with pytest.raises(UserError) as err:
        build_report([runs], tmp_path / "r.html")
    assert "no result.json found" not in str(err.value) and str(runs / "a" / "result.json") in str(err.value)
    assert not (tmp_path / "r.html").exists()


def test_mathtext_names_are_drawn_literally_in_the_radar_chart(tmp_path, validate_result):
    names = ["$\\foo{$", "$x$", "a_b^c"]
    report = build_document(collect_results([three_tasks(tmp_path, names, validate_result)]), "t")
    (view,) = [v for c in report.comparisons for v in c.charts if v.figures]
    buffer = io.StringIO()
    with rc_context({"svg.fonttype": "none"}):      # text as <text> elements, so the literal string shows
        view.figures[0].savefig(buffer, format="svg")
    svg = buffer.getvalue()
    for name in names:
        assert f">{name}: area " in svg
    assert render_pdf(report).startswith(b"%PDF")
    html = render_html(report)
    assert html.count("<svg") == 1 and "$\\foo{$" in html


def test_hostile_names_and_a_string_epoch_render_everywhere(tmp_path):
    runs = three_tasks(tmp_path / "runs", HOSTILE, epoch="forty")
    out = tmp_path / "rep" / "r.html"
    built = build_report([runs], out, pdf=True, markdown=tmp_path / "rep" / "r.md", csv_dir=tmp_path / "rep")
    html = out.read_text(encoding="utf-8")
    assert not re.search(r"<script|<img", html, flags=re.I)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<span class='v'>forty</span>" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "n" * 300 in html
    assert built.pdf.read_bytes().startswith(b"%PDF") and b"%%EOF" in built.pdf.read_bytes()[-64:]
    md = built.markdown.read_text(encoding="utf-8")
    assert "<script" not in md and "<img" not in md and "&lt;script&gt;" in md
    # Every table row has as many unescaped pipes as its table's header.
    for table in md.split("\n\n"):
        rows = [line for line in table.splitlines() if line.startswith("|")]
        counts = {len(re.findall(r"(?<!\\)\|", line)) for line in rows}
        assert len(counts) <= 1, table
    assert "a\\|b\\`c\\`" in md and "line break" in md and "a\\_b^c" in md


def test_markdown_escapes_every_heading_and_cell(tmp_path):
    runs = three_tasks(tmp_path, ["<b>x</b>|`y`\n# z"])
    report = build_document(collect_results([runs]), "Title <i>|</i>\nnext")
    md = render_markdown(report)
    assert md.startswith("# Title &lt;i&gt;\\|&lt;/i&gt; next\n")
    assert "<b>" not in md and "<i>" not in md
    row = next(line for line in md.splitlines() if line.startswith("| &lt;b&gt;"))
    assert row.startswith("| &lt;b&gt;x&lt;/b&gt;\\|\\`y\\` \\# z | ")


# ----------------------------------------------------------------------------- writing the set
@pytest.fixture
def runs(tmp_path):
    return three_tasks(tmp_path / "runs", ["mec", "byol"])


def _set(tmp_path: Path) -> dict:
    return dict(out=tmp_path / "rep" / "r.html", pdf=True, csv_dir=tmp_path / "rep" / "csv",
                markdown=tmp_path / "rep" / "r.md")


def _files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_csv_onto_a_file_or_out_onto_a_folder_writes_nothing(runs, tmp_path):
    rep = tmp_path / "rep"
    rep.mkdir()
    (rep / "csv").write_text("not a folder")
    with pytest.raises(UserError, match=f"--csv {rep / 'csv'} is an existing file"):
        build_report([runs], **_set(tmp_path))
    assert sorted(p.name for p in rep.iterdir()) == ["csv"]
    (rep / "r.html").mkdir()
    with pytest.raises(UserError, match=f"--out {rep / 'r.html'} is an existing folder"):
        build_report([runs], rep / "r.html", pdf=True)
    assert not (rep / "r.pdf").exists()


def test_unwritable_parent_is_named_before_anything_is_written(runs, tmp_path, monkeypatch):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    with pytest.raises(UserError, match="blocker is a file, so the folder"):
        build_report([runs], tmp_path / "rep" / "r.html", markdown=tmp_path / "blocker" / "sub" / "r.md")
    assert not (tmp_path / "rep").exists()
    denied = tmp_path / "denied"
    denied.mkdir()
    real_access = os.access
    monkeypatch.setattr(output.os, "access", lambda p, mode: Path(p) != denied and real_access(p, mode))
    with pytest.raises(UserError, match=f"no permission to write in {denied}"):
        build_report([runs], tmp_path / "ok.html", pdf=True, csv_dir=denied / "csv")
    assert not (tmp_path / "ok.html").exists() and not (tmp_path / "ok.pdf").exists()


def test_same_file_twice_is_a_user_error(runs, tmp_path):
    with pytest.raises(UserError, match="also the --out file"):
        build_report([runs], tmp_path / "r.html", markdown=tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("fail_on", ["r.pdf", "ranks.csv", "r.md"])
def test_disk_full_midway_leaves_the_previous_set_and_no_temp_file(runs, tmp_path, monkeypatch, fail_on):
    build_report([runs], **_set(tmp_path))
    before = _files(tmp_path / "rep")
    assert len(before) == 5
    three_tasks(tmp_path / "runs2", ["simclr"])
    real = output.atomic_write_bytes

    def full_disk(path, data):
        if path.name.startswith(f".{fail_on}."):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(output, "atomic_write_bytes", full_disk)
    with pytest.raises(UserError) as err:
        build_report([runs, tmp_path / "runs2"], **_set(tmp_path))
    target = next(p for p in before if p.name == fail_on)
    assert str(err.value).startswith(f"cannot write {target} (No space left on device)")
    assert _files(tmp_path / "rep") == before        # same files, same bytes: no new HTML, no temp file


def test_new_folders_are_removed_when_the_set_fails(runs, tmp_path, monkeypatch):
    def broken(path, data):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(output, "atomic_write_bytes", broken)
    with pytest.raises(UserError, match="Read-only file system"):
        build_report([runs], **_set(tmp_path))
    assert not (tmp_path / "rep").exists()


def test_interrupt_while_renaming_restores_the_previous_set(runs, tmp_path, monkeypatch):
    build_report([runs], **_set(tmp_path))
    before = _files(tmp_path / "rep")
    three_tasks(tmp_path / "runs2", ["simclr"])
    real, calls = os.replace, []

    def interrupted(src, dst):
        if str(src).endswith(".new"):           # the set's renames (staging uses os.replace too)
            calls.append(dst)
            if len(calls) == 3:
                raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(output.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_report([runs, tmp_path / "runs2"], **_set(tmp_path))
    assert len(calls) == 3 and _files(tmp_path / "rep") == before


def test_interrupt_while_staging_leaves_the_previous_set_untouched(runs, tmp_path, monkeypatch):
    build_report([runs], **_set(tmp_path))
    before = _files(tmp_path / "rep")
    real = output.atomic_write_bytes

    def interrupted(path, data):
        if path.name.startswith(".ranks.csv."):
            raise KeyboardInterrupt
        real(path, data)

    monkeypatch.setattr(output, "atomic_write_bytes", interrupted)
    three_tasks(tmp_path / "runs2", ["simclr"])
    with pytest.raises(KeyboardInterrupt):
        build_report([runs, tmp_path / "runs2"], **_set(tmp_path))
    assert _files(tmp_path / "rep") == before


def test_a_full_set_replaces_every_file(runs, tmp_path):
    build_report([runs], **_set(tmp_path))
    before = _files(tmp_path / "rep")
    three_tasks(tmp_path / "runs2", ["simclr"])
    build_report([runs, tmp_path / "runs2"], **_set(tmp_path))
    after = _files(tmp_path / "rep")
    assert set(after) == set(before) and all(after[p] != before[p] for p in before)
    assert b"simclr" in after[tmp_path / "rep" / "r.html"]
