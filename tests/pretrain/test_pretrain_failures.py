"""A failed or pointless ``pretrain`` leaves nothing behind and says why in one line."""
from pathlib import Path

import pytest

from mec_eval.config import load_pretrain_config
from mec_eval.pretrain.main import pretrain
from mec_eval.training import engine
from mec_eval.utils import UserError

TINY = ["data.name=digits", "optim.epochs=1", "optim.batch_size=32", "run.max_steps_per_epoch=1",
        "model.proj_hidden=32", "model.proj_dim=32", "model.pred_hidden=16", "run.device=cpu"]


def tiny(*extra: str):
    return load_pretrain_config("digits", [*TINY, *extra])


def test_zero_epochs_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(UserError, match="'optim.epochs' must be >= 1, got 0"):
        tiny("optim.epochs=0")
    cfg = tiny()
    cfg.optim.epochs = 0  # built in code, not from a file: pretrain validates again
    with pytest.raises(UserError, match="'optim.epochs' must be >= 1"):
        pretrain(cfg, tmp_path / "out", quiet=True)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, needle", [
    (["optim.batch_size=100000"], "optim.batch_size=100000 exceeds"),
    (["data.name=imagefolder", "data.root=/nonexistent/folder"], "no folder /nonexistent/folder"),
    (["data.name=nosuch"], "unknown dataset 'nosuch'"),
    (["loss.name=mce"], "did you mean mec"),
])
def test_failed_pretrain_leaves_no_out_folder(tmp_path, extra, needle):
    out = tmp_path / "new" / "pre"
    with pytest.raises(UserError, match=needle):
        pretrain(tiny(*extra), out, quiet=True)
    assert not (tmp_path / "new").exists()


def test_failure_during_first_epoch_removes_only_what_it_created(tmp_path, monkeypatch):
    out = tmp_path / "pre"
    out.mkdir()
    (out / "notes.txt").write_text("mine")

    def boom(*args, **kwargs):
        raise UserError("the loss became non-finite")

    monkeypatch.setattr(engine.TrainingEngine, "fit", boom)
    with pytest.raises(UserError, match="non-finite"):
        pretrain(tiny(), out, quiet=True)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # config.yaml and log.jsonl removed
    fresh = tmp_path / "fresh"
    with pytest.raises(UserError):
        pretrain(tiny(), fresh, quiet=True)
    assert not fresh.exists()


def test_truncated_last_pt_is_one_line_with_the_fix(tmp_path):
    out = tmp_path / "pre"
    last = pretrain(tiny(), out, quiet=True)
    assert last == out / "last.pt" and (out / "checkpoint_0001.pt").is_file()
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(UserError) as err:
        pretrain(tiny("optim.epochs=2"), out, quiet=True)
    message = str(err.value)
    assert message.startswith(f"{last} is truncated or corrupt") and "delete it" in message
    assert "\n" not in message
    last.write_bytes(b"")
    with pytest.raises(UserError, match="truncated or corrupt"):
        pretrain(tiny("optim.epochs=2"), out, quiet=True)
    assert (out / "checkpoint_0001.pt").is_file()  # a failed resume never cleans a folder with checkpoints


def test_progress_bar_counts_epochs_from_one(tmp_path, monkeypatch):
    seen = []

    def spy(iterable, *, total=None, desc="", quiet=False):
        seen.append(desc)
        return iterable

    monkeypatch.setattr(engine, "progress", spy)
    pretrain(tiny("optim.epochs=2"), tmp_path / "pre", quiet=True)
    assert seen == ["epoch 1/2", "epoch 2/2"]
    lines = Path(tmp_path / "pre" / "log.jsonl").read_text()
    assert '"epoch": 1' in lines and '"epoch": 2' in lines


def test_resume_reads_settings_added_after_a_run_began_as_their_defaults():
    from mec_eval.config import PretrainConfig, to_dict
    from mec_eval.pretrain.engine import _config_differences

    current, defaults = to_dict(PretrainConfig()), to_dict(PretrainConfig())
    saved = {section: dict(values) for section, values in current.items()}
    del saved["loss"]["regularizer"], saved["loss"]["regularizer_weight"]  # a run saved before they existed
    assert _config_differences(saved, current, defaults) == []
    current["loss"]["regularizer"] = "mec"  # ... but asking for something else than the default is a change
    assert _config_differences(saved, current, defaults) == ["loss.regularizer: (not saved) -> 'mec'"]
    saved["loss"]["eps_d2"] = 0.5
    assert "loss.eps_d2: 0.5 -> 0.06" in _config_differences(saved, current, defaults)
