"""The vocabulary: one torch-free list of task, dataset and metric names that tasks, data and report share."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mec_eval import vocabulary
from mec_eval.vocabulary import DATASETS, METRICS, TASKS

REPO = Path(__file__).resolve().parents[2]


def test_importing_the_vocabulary_and_runs_loads_no_torch():
    code = ("import sys, mec_eval.vocabulary, mec_eval.runs; "
            "print(sorted(m for m in ('torch', 'torchvision', 'jsonschema') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_every_name_a_record_uses_is_in_the_vocabulary():
    for task in TASKS.values():
        assert task.metrics and set(task.metrics) <= set(METRICS), task.name
        assert task.paper_dataset is None or task.paper_dataset in DATASETS, task.name
        assert task.datasets is None or set(task.datasets) <= set(DATASETS), task.name
        assert task.kind in vocabulary.DATA_KINDS
    assert {d.metric for d in DATASETS.values()} - {None} <= set(METRICS)
    assert vocabulary.TRANSFER_TASKS == ("transfer-linear", "transfer-finetune")
    assert [vocabulary.primary_metric("transfer-linear", d) for d in ("food101", "aircraft", "voc2007")] == [
        "top1", "mean_per_class", "voc07_map"]
    assert vocabulary.primary_metric("coco", "coco2017") == "bbox_AP"


@pytest.mark.parametrize("name, base", [("knn", "knn"), ("knn-200", "knn"), ("linear-fast", "linear-fast"),
                                        ("semi-1pct-mec", "semi-1pct"), ("transfer-finetune-fast", "transfer-finetune")])
def test_a_variant_resolves_to_its_task(name, base):
    assert vocabulary.task(name).name == base


@pytest.mark.parametrize("lookup, name, hint", [
    (vocabulary.task, "knnn", "did you mean knn?"), (vocabulary.task, "200-knn", "known: linear, "),
    (vocabulary.dataset, "cifar11", "did you mean cifar10, cifar100"), (vocabulary.metric, "top_1", "did you mean top1"),
])
def test_unknown_names_are_value_errors_with_close_matches(lookup, name, hint):
    with pytest.raises(ValueError, match="unknown") as err:
        lookup(name)
    assert hint in str(err.value) and "\n" not in str(err.value)


def test_name_problems_lists_each_unknown_name():
    assert vocabulary.name_problems("knn-200", "digits", ["top1", "top5"]) == []
    problems = vocabulary.name_problems("knn-200", "digts", ["top1", "mAP"])
    assert problems[0].startswith("unknown dataset 'digts'; did you mean digits")
    assert problems[1] == "task knn-200 (a variant of knn) has no metric 'mAP' (knn writes: top1, top5)"


def test_every_task_spec_is_a_vocabulary_task_and_every_classification_task_has_a_spec():
    from mec_eval.tasks.specs import list_task_specs

    specs = list_task_specs()
    assert specs
    for spec in specs:
        vocabulary.task(spec.name)  # every spec is a task or a <task>-<variant>
    names = {spec.name for spec in specs}
    assert set(TASKS) <= names, f"no tasks/<name>.yaml for {sorted(set(TASKS) - names)}"


def test_registered_datasets_are_the_vocabulary_less_the_sets_still_to_come():
    from mec_eval.data import DATASETS as REGISTRY
    from mec_eval.data import TRANSFER_DATASETS

    registered = set(REGISTRY.names())
    assert registered <= set(DATASETS)
    # What the vocabulary names beyond the registry is exactly what the detection / video tasks will read.
    coming = {t.paper_dataset for t in TASKS.values() if t.kind != "classification"}
    synthetic = {"shapes-detection", "shapes-video"}
    assert coming == {"pascal-voc", "coco2017", "otb2015", "davis2017", "mot16", "mots20", "posetrack2018"}
    assert set(DATASETS) - registered <= coming | synthetic
    assert TRANSFER_DATASETS is vocabulary.TRANSFER_DATASETS and set(TRANSFER_DATASETS) <= registered


def _written_metrics(metric: str, classes: int) -> set[str]:
    """The metric names the evaluator of ``metric`` ("top1": top-1/top-5) writes for a ``classes``-way set."""
    from mec_eval.metrics.classification import evaluator_for

    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(40, classes, generator=gen)
    if metric == "voc07_map":
        targets = torch.randint(-1, 2, (40, classes), generator=gen)
        targets[0], targets[1] = 1, 0  # every class has a positive and a negative
    else:
        targets = torch.arange(40) % classes
    evaluator = evaluator_for(metric)
    evaluator.process(scores, targets)
    return set(evaluator.evaluate())


def test_every_metric_a_classification_task_writes_is_in_its_vocabulary():
    """knn / linear / linear-fast / semi score top-1/top-5 on any set; transfer tasks each set by its metric."""
    from mec_eval.data import TRANSFER_DATASETS, dataset_spec

    for task in ("knn", "linear", "linear-fast", "semi-1pct", "semi-10pct"):
        assert _written_metrics("top1", 10) == set(TASKS[task].metrics) == {"top1", "top5"}
    for task in vocabulary.TRANSFER_TASKS:
        for name in TRANSFER_DATASETS:
            spec = dataset_spec(name)
            written = _written_metrics(spec.metric, spec.num_classes)
            assert spec.metric in written and written <= set(TASKS[task].metrics), (task, name, written)


def test_the_report_catalog_is_drawn_from_the_vocabulary():
    from mec_eval.report import catalog

    grouped = [task for group in catalog.GROUPS for task in group.tasks]
    assert sorted(grouped) == sorted(name for name, t in TASKS.items() if t.family != "diagnostics")
    assert catalog.METRIC_ORDER == tuple(METRICS) and catalog.LOWER_IS_BETTER == {"id_switches"}
    assert catalog.COUNT_METRICS == {"id_switches"}
    assert catalog.DIAGNOSTIC_METRICS == set(TASKS["diagnostics"].metrics)
    assert {"coding_length", "effective_rank", "entropy_h1", "mutual_information_centred"} <= catalog.DIAGNOSTIC_METRICS
    assert catalog.is_diagnostic("diagnostics", "top1") and catalog.is_diagnostic("diagnostics-layer3", "top1")
    assert not catalog.is_diagnostic("knn", "top1")
    assert catalog.task_label("knn", "digits") == "k-NN [digits]" and catalog.task_label("knn", "imagenet") == "k-NN"
    assert catalog.task_label("transfer-linear", "dtd") == "Transfer (linear)"


def test_every_radar_axis_names_vocabulary_tasks_and_metrics():
    from mec_eval.report import rank

    for spec in (*rank.IMAGE_AXES, *rank.VIDEO_AXES, *rank.SUPPLEMENTARY_AXES):
        for name in spec.tasks:  # a task or a <task>-<variant> with its own YAML (the labelled CPU variants)
            record = vocabulary.task(name)
            assert name in TASKS or (REPO / "tasks" / f"{name}.yaml").is_file(), (spec.name, name)
            assert spec.metric is None or spec.metric in record.metrics, (spec.name, name)
            assert record.paper_dataset == spec.paper_dataset, (spec.name, name)
    assert all(name in TASKS or (REPO / "tasks" / f"{name}.yaml").is_file() for name in rank.TASK_TAGS)
    assert [a.paper_dataset for a in rank.IMAGE_AXES] == ["imagenet", "imagenet", "pascal-voc", "coco2017", "coco2017"]
