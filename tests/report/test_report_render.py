"""The written report: self-contained stable HTML, radar charts in headless Chromium, PDF pages, the CLI."""
import re
import shutil
import subprocess

import jsonschema
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mec_eval.cli import main
from mec_eval.report import build_report
from mec_eval.runs import build_result, write_result

# tab10's first two colours: the first two measured checkpoints' polygons (published rows use tab20b).
BLUE, ORANGE = (0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)
TASKS = [("linear", "imagenet", {"top1": 70.0, "top5": 90.0}, ""), ("semi-1pct", "imagenet", {"top1": 50.0}, ""),
         ("voc0712", "pascal-voc", {"AP": 55.0, "AP50": 80.0}, ""),
         ("coco", "coco2017", {"bbox_AP": 39.0, "segm_AP": 34.0}, ""),
         ("sot", "otb2015", {"auc_xcorr": 50.0}, "layer3"), ("sot", "otb2015", {"auc_xcorr": 53.0}, "layer4"),
         ("vos", "davis2017", {"j_mean": 60.0}, "layer4"), ("mot", "mot16", {"idf1": 70.0}, "layer4"),
         ("knn", "digits", {"top1": 95.0, "top5": 99.0}, "")]


def _write_runs(root, schema, checkpoints):
    for i, (ckpt, shift) in enumerate(checkpoints):
        for j, (task, dataset, metrics, setting) in enumerate(TASKS):
            result = build_result(
                task=task, dataset=dataset, protocol="paper",
                checkpoint={"name": ckpt, "path": f"/ckpts/{ckpt}.pt", "sha256": f"{i:x}" * 64, "layout": "mec-eval",
                            "method": ckpt, "epoch": 100},
                metrics={k: v + shift * (1 + j % 3) for k, v in metrics.items()}, primary=next(iter(metrics)),
                higher_is_better=True, config={}, seed=0, started="2026-01-01T00:00:00+00:00", duration_s=1.0,
                extra={"extra": {"setting": setting}} if setting else None)
            jsonschema.validate(result, schema)
            write_result(root / task / ckpt / f"{j}", result)
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory, result_schema):
    return _write_runs(tmp_path_factory.mktemp("runs"), result_schema,
                       [("mec", 2.0), ("byol", 1.0), ("random", -20.0)])


@pytest.fixture(scope="module")
def built(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return build_report([runs], out / "r.html", pdf=True, csv_dir=out / "csv", markdown=out / "r.md")


def _colour_pixels(image: Image.Image, colour, tol: int = 30) -> int:
    pixels = np.asarray(image.convert("RGB")).astype(int)
    return int((np.abs(pixels - np.array(colour)).max(axis=2) <= tol).sum())


def test_html_is_self_contained_and_byte_stable(built, runs, tmp_path):
    html = built.html.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and html.count("<svg") == 2      # image and video radar
    # url(#id) references the SVG's own clip paths; anything else would be fetched at view time.
    assert not re.search(r"<script|<link|<img|<iframe|@import|url\((?!#)", html, flags=re.I)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html, flags=re.I)
    again = build_report([runs], tmp_path / "r.html", pdf=True)
    assert again.html.read_bytes() == built.html.read_bytes()
    assert again.pdf.read_bytes() == built.pdf.read_bytes()


def test_radar_chart_is_drawn_in_headless_chromium(built, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium not installed (Debian: apt-get install chromium); browser rendering not checked")
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1400,1000",
                    built.html.resolve().as_uri()], check=True, capture_output=True, timeout=60)
    # The image radar chart is the first thing under the title; polygons are the only tab10 colours.
    page = Image.open(shot)
    assert page.size == (1400, 1000) and np.asarray(page.convert("L")).std() > 10
    assert _colour_pixels(page, BLUE) > 300 and _colour_pixels(page, ORANGE) > 300


def test_pdf_has_pages_that_rasterise(built, tmp_path):
    if shutil.which("pdftoppm") is None or shutil.which("pdfinfo") is None:
        pytest.skip("poppler-utils not installed (pdftoppm, pdfinfo); PDF pages not rasterised")
    info = subprocess.run(["pdfinfo", str(built.pdf)], check=True, capture_output=True, text=True).stdout
    pages = int(re.search(r"^Pages:\s+(\d+)", info, flags=re.M).group(1))
    subprocess.run(["pdftoppm", "-png", "-r", "30", str(built.pdf), str(tmp_path / "page")], check=True, timeout=60)
    images = sorted(tmp_path.glob("page-*.png"))
    assert pages >= 4 and len(images) == pages
    chart = Image.open(images[1])          # page 1: title and notes; page 2: the image radar chart
    assert _colour_pixels(chart, BLUE) > 20 and _colour_pixels(chart, ORANGE) > 20
    assert all(np.asarray(Image.open(p).convert("L")).min() < 128 for p in images)   # no blank page


def test_csv_and_markdown_files(built):
    names = sorted(p.name for p in built.csv)
    assert names == ["ranks.csv", "results.csv"] and built.markdown.is_file()
    ranks = pd.read_csv(built.csv[0].parent / "ranks.csv")
    sot = ranks[ranks.axis == "SOT"].set_index("checkpoint")
    assert sot["value"].to_dict() == {"byol": 56.0, "mec": 59.0, "random": 10.0}   # layer4, layer4, layer3
    assert sot["rank"].to_dict() == {"byol": 2, "mec": 1, "random": 3}
    md = built.markdown.read_text(encoding="utf-8")
    assert "| mec | **72.0** | **92.0** |" in md and "| byol | <u>71.0</u> | <u>91.0</u> |" in md


def test_cli_report_end_to_end_and_exit_2_on_empty_folder(runs, tmp_path, capsys, result_schema):
    other = _write_runs(tmp_path / "more", result_schema, [("simclr", 1.5)])
    out = tmp_path / "out" / "report.html"
    assert main(["report", "--runs", str(runs), str(other), "--out", str(out), "--csv", str(tmp_path / "csv"),
                 "--markdown"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out), str(tmp_path / "csv" / "results.csv"), str(tmp_path / "csv" / "ranks.csv"),
                       str(out.with_suffix(".md"))]
    results = pd.read_csv(tmp_path / "csv" / "results.csv")
    assert sorted(results.checkpoint.unique()) == ["byol", "mec", "random", "simclr"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", "--runs", str(empty), "--out", str(tmp_path / "none.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert str(empty) in err and len(err.splitlines()) == 1 and not (tmp_path / "none.html").exists()


def test_cli_with_published_places_checkpoints_among_the_paper(runs, tmp_path, capsys):
    pytest.importorskip("mec_eval.report.published", reason="published reference rows not available yet")
    out = tmp_path / "pub.html"
    assert main(["report", "--runs", str(runs), "--out", str(out), "--with-published", "--csv", str(tmp_path)]) == 0
    capsys.readouterr()
    html = out.read_text(encoding="utf-8")
    assert "<tr class='pub'><td>MEC †</td>" in html and "Among the published results" in html
    ranks = pd.read_csv(tmp_path / "ranks.csv")
    lin = ranks[(ranks.axis == "LIN") & ranks.chart.str.startswith("Among")].set_index("checkpoint")
    # LIN uses Table 1 at 800 epochs; ours (72.0) ranks right after every published value above it.
    assert lin.loc["MEC", "rank"] == 1 and bool(lin.loc["MEC", "published"])
    assert lin.loc["mec", "rank"] == 1 + (lin.loc[lin.published, "value"] > 72.0).sum()
    assert not bool(lin.loc["mec", "published"])
    knn = ranks[ranks.axis == "kNN (digits)"]
    assert set(knn.checkpoint) == {"mec", "byol", "random"} and knn.chart.str.startswith("Your checkpoints").all()
    results = pd.read_csv(tmp_path / "results.csv")
    published = results[results.protocol == "published"]
    assert len(published) > 100 and published.seed.isna().all() and published.source.str.contains("Table").all()
