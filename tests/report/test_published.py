"""Published reference tables: every number against the MEC paper's text, the loader's rows, schema errors."""
import copy
import math
import os
import re
from pathlib import Path

import pytest
import yaml

from mec_eval.report.published import PUBLISHED_COLUMNS, list_published, load_published, published_dir
from mec_eval.utils import UserError

PAPER = Path(os.environ["MEC_EVAL_SHARED"]) / "papers" / "mec-neurips2022-full.txt"  # set by conftest.py
TABLES = [f"mec-table{number}" for number in range(1, 9)]
# Paper header lines that list the YAML column labels in order (tables whose header is one plain line).
HEADER_PREFIX = {"mec-table1": "", "mec-table6": "model ", "mec-table7": "Method ", "mec-table8": "Method "}


@pytest.fixture(scope="module")
def paper_lines():
    if not PAPER.is_file():
        pytest.skip(f"paper text not found at {PAPER} (shared/ must sit beside the checkout)")
    # The extraction puts non-breaking spaces between a method and its citation.
    return PAPER.read_text(encoding="utf-8").replace("\xa0", " ").splitlines()


def _raw(table):
    return yaml.safe_load((published_dir() / f"{table}.yaml").read_text(encoding="utf-8"))


def _block(lines, number):
    """The lines of Table ``number``: after its caption, up to a blank line or the next caption."""
    start = next(i for i, line in enumerate(lines) if line.startswith(f"Table {number}:"))
    end = start + 1
    while end < len(lines) and lines[end].strip() and not re.match(r"Table \d+:", lines[end]):
        end += 1
    return lines[start + 1:end]


def _numbers(text, triplicated):
    """Numbers of a paper row in order; '-' is None. Table 8's LaTeX repeats each number three times."""
    if triplicated:
        out = []
        for token in text.split():
            found = re.findall(r"\d+\.\d", token)
            assert len(found) == 3 and len(set(found)) == 1, token
            out.append(float(found[0]))
        return out
    return [None if token == "-" else float(token) for token in re.findall(r"-(?!\d)|\d+(?:\.\d+)?", text)]


def _row_line(block, row):
    """The paper line of a YAML row: the unique line starting with its label (within its group heading)."""
    scope = block
    if row.get("group"):
        heading = next(i for i, line in enumerate(block) if line.rstrip(":") == row["group"])
        scope = block[heading + 1:]
        return next(line for line in scope if line.startswith(row["label"] + " "))
    matches = [line for line in scope if line.startswith(row["label"] + " ")]
    assert len(matches) == 1, (row["label"], matches)
    return matches[0]


def _check_ablation_rows(data, block):
    """Table 5: each sub-table is a header line, an 'acc.' line and its '(a)'..'(f)' tag."""
    columns = {column["key"]: column for column in data["columns"]}
    for row in data["rows"]:
        tag = block.index(row["group"].split()[0])
        header, values_line = block[tag - 2], block[tag - 1]
        assert values_line.startswith(row["label"] + " ")
        keys = [key for key in columns if key in row["values"]]
        assert _numbers(values_line[len(row["label"]):], False) == [row["values"][key] for key in keys]
        assert header.split()[-len(keys):] == [columns[key]["label"] for key in keys]
        assert [columns[key].get("default", False) for key in keys].count(True) == 1, row["group"]


@pytest.mark.parametrize("table", TABLES)
def test_every_value_matches_the_paper_text(table, paper_lines):
    data = _raw(table)
    number = int(table.removeprefix("mec-table"))
    block = _block(paper_lines, number)
    if table == "mec-table5":
        _check_ablation_rows(data, block)
        return
    labels = [column["label"] for column in data["columns"]]
    for row in data["rows"]:
        line = _row_line(block, row)
        expected = [row["values"].get(column["key"]) for column in data["columns"]]
        assert _numbers(line[len(row["label"]):], triplicated=number == 8) == expected, row["label"]
    if table in HEADER_PREFIX:
        assert HEADER_PREFIX[table] + " ".join(labels) in block
    if table == "mec-table7":
        epochs = next(line for line in block if line.startswith("epoch "))
        assert _numbers(epochs[len("epoch"):], False) == [column["epoch"] for column in data["columns"]]


def _pairs(*groups):
    return [(task, metric) for task, metrics in groups for metric in metrics]


# What each paper column measures, read off the (two-level) headers of Tables 2, 3, 4 and 8.
COLUMN_MEANING = {
    "mec-table2": _pairs(("semi-1pct", ["top1", "top5"]), ("semi-10pct", ["top1", "top5"])),
    "mec-table3": _pairs(("voc07", ["AP50", "AP", "AP75"]), ("voc0712", ["AP50", "AP", "AP75"]),
                         ("coco", ["bbox_AP50", "bbox_AP", "bbox_AP75", "segm_AP50", "segm_AP", "segm_AP75"])),
    "mec-table4": _pairs(*[(task, [metric, metric]) for task, metric in [
        ("sot", "auc_xcorr"), ("sot", "auc_dcf"), ("vos", "j_mean"), ("mot", "idf1"), ("mot", "hota"),
        ("mots", "idf1"), ("mots", "hota"), ("posetrack", "idf1"), ("posetrack", "id_switches")]]),
}
TABLE8_DATASETS = ["food101", "cifar10", "cifar100", "sun397", "cars", "aircraft", "voc2007", "dtd", "pets",
                   "caltech101", "flowers102"]


def test_column_meaning_follows_the_paper_header():
    frame = load_published(["mec-table2", "mec-table3", "mec-table4", "mec-table8"])
    for table, expected in COLUMN_MEANING.items():
        mec = frame[(frame.table == table) & (frame.checkpoint == "MEC")]
        assert list(zip(mec.task, mec.metric)) == expected, table
    layers = frame.loc[(frame.table == "mec-table4") & (frame.checkpoint == "MEC"), "setting"]
    assert list(layers) == ["layer3", "layer4"] * 9  # the caption: each cell is [layer3 / layer4]
    for task in ("transfer-linear", "transfer-finetune"):
        mec = frame[(frame.table == "mec-table8") & (frame.checkpoint == "MEC") & (frame.task == task)]
        assert list(mec.dataset) == TABLE8_DATASETS


def test_loader_returns_exactly_the_yaml_values():
    frame = load_published()
    assert list(frame.columns) == PUBLISHED_COLUMNS and list_published() == TABLES
    for table in TABLES:
        values = [v for row in _raw(table)["rows"] for v in row["values"].values()]
        assert sorted(frame.loc[frame.table == table, "value"]) == sorted(map(float, values)), table
    assert (frame.protocol == "published").all() and frame.published.all() and frame.seed.isna().all()
    assert set(frame.layout) == {"published"} and frame.sha256.isna().all() and set(frame.result_file) == {""}
    assert set(frame.loc[~frame.higher_is_better, "metric"]) == {"id_switches"}
    assert all(isinstance(e, int) or math.isnan(e) for e in frame.epoch)
    assert frame.source.str.contains(r"Table \d").all()


def _one(frame, **where):
    rows = frame
    for key, value in where.items():
        rows = rows[rows[key] == value]
    assert len(rows) == 1, where
    return rows.iloc[0]


def test_spot_values():
    frame = load_published()
    lin = _one(frame, table="mec-table1", checkpoint="MEC (800 ep)")
    assert (lin.value, lin.epoch, lin.task, lin.metric, lin.primary) == (74.5, 800, "linear", "top1", True)
    semi = _one(frame, table="mec-table2", checkpoint="MEC", task="semi-1pct", metric="top1")
    assert semi.value == 55.9 and semi.dataset == "imagenet"
    coco = _one(frame, table="mec-table3", checkpoint="MEC", task="coco", metric="bbox_AP")
    assert coco.value == 39.8 and coco.primary and coco.dataset == "coco2017"
    ids = _one(frame, table="mec-table4", checkpoint="MEC", metric="id_switches", setting="layer3")
    assert ids.value == 6665 and not ids.higher_is_better and ids.task == "posetrack"
    assert _one(frame, table="mec-table4", checkpoint="MEC", metric="id_switches", setting="layer4").value == 7752
    air = _one(frame, table="mec-table8", checkpoint="MEC", task="transfer-finetune", dataset="aircraft")
    assert (air.value, air.metric, air.primary) == (88.5, "mean_per_class", True)
    assert "row 'MEC', column 'Aircraft'" in air.source and "Fine-tuned" in air.source
    batch = _one(frame, table="mec-table5", checkpoint="MEC (batch 256)")
    assert (batch.value, batch.epoch, batch.task) == (70.1, 100, "linear")
    assert frame[(frame.table == "mec-table6") & frame.checkpoint.str.startswith("iBOT (R-50")].empty  # "-"
    assert "[12] Chen et al." in _one(frame, table="mec-table1", checkpoint="SimCLR (100 ep)").source


def test_table_selection():
    frame = load_published(["mec-table7", "mec-table7"])
    assert set(frame.table) == {"mec-table7"} and len(frame) == 9
    assert load_published("mec-table2").shape[0] == 28
    with pytest.raises(UserError, match=r"unknown published table\(s\) mec-table99 \(known: mec-table1, "):
        load_published(["mec-table99"])


BASE = {
    "schema": 1, "table": "toy", "source": "Paper X, Table 1", "caption": "toy", "protocol": "published",
    "defaults": {"task": "linear", "dataset": "imagenet"},
    "references": {"12": "Chen et al., ICML 2020"},
    "columns": [{"key": "t1", "label": "Top 1", "metric": "top1"}, {"key": "t5", "label": "Top 5", "metric": "top5"}],
    "rows": [{"label": "SimCLR [12]", "checkpoint": "SimCLR", "method": "simclr", "values": {"t1": 70.0}}],
}


def _write(folder, doc):
    (folder / "toy.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")


def test_valid_toy_table_loads(tmp_path):
    _write(tmp_path, BASE)
    assert list_published(tmp_path) == ["toy"]
    row = _one(load_published(directory=tmp_path), metric="top1")
    assert row.value == 70.0 and row.checkpoint == "SimCLR" and math.isnan(row.epoch)
    assert row.source == "Paper X, Table 1, row 'SimCLR [12]', column 'Top 1'; [12] Chen et al., ICML 2020"


def _row(**change):
    return lambda doc: doc["rows"][0].update(change)


@pytest.mark.parametrize("mutate, message", [
    (_row(valeus={"t1": 1.0}), r"toy\.yaml: row 'SimCLR \[12\]': unknown key 'valeus'; did you mean values\?"),
    (_row(values={"t1": "70.0%"}), r"row 'SimCLR \[12\]', column 't1': value '70.0%' is not a number"),
    (_row(values={"t1": True}), r"column 't1': value True is not a number"),
    (_row(values={"top1": 70.0}), r"row 'SimCLR \[12\]': value for undeclared column 'top1' \(declared: t1, t5\)"),
    (_row(metric="top1"), r"metric set by both the row and the column"),
    (_row(epoch=800.5), r"epoch 800\.5 is not an integer"),
    (_row(label="SimCLR [13]"), r"add \[13\] to the file's references"),
    (lambda doc: doc["columns"][0].update(metric="AP"), r"task linear reports top1, top5, not 'AP'"),
    (lambda doc: doc["defaults"].update(task="lineer"), r"unknown task 'lineer'"),
    (lambda doc: doc["rows"][0].pop("checkpoint"), r"no checkpoint from defaults, row or column"),
    (lambda doc: doc["rows"].append(copy.deepcopy(doc["rows"][0])), r"appears twice in the table"),
    (lambda doc: doc.update(table="other"), r"table: toy \(the file name\)"),
    (lambda doc: doc.update(captoin="x"), r"toy\.yaml: unknown key 'captoin'"),
    (lambda doc: doc["columns"].append({"key": "t1", "label": "again"}), r"column 't1': key declared twice"),
])
def test_schema_errors_name_file_and_row(tmp_path, mutate, message):
    doc = copy.deepcopy(BASE)
    mutate(doc)
    _write(tmp_path, doc)
    with pytest.raises(UserError, match=message):
        load_published(directory=tmp_path)


def test_invalid_yaml_is_a_user_error(tmp_path):
    (tmp_path / "toy.yaml").write_text("rows: [unclosed\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"toy\.yaml: not valid YAML"):
        load_published(directory=tmp_path)
