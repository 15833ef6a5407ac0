import pytest
import re

from mec_eval.config import (PretrainConfig, config_hash, from_dict, load_pretrain_config, merge, parse_overrides,
                             to_dict)
from mec_eval.utils import UserError


def test_overrides_reach_typed_fields():
    cfg = from_dict(PretrainConfig, parse_overrides([
        "optim.epochs=7", "optim.batch_size=64", "optim.base_lr=0.25", "model.arch=resnet18", "loss.name=byol",
        "loss.eps_d2=0.1", "loss.order=2", "data.name=digits", "data.root=/data/x", "model.predictor=false"]))
    assert (cfg.optim.epochs, cfg.optim.batch_size, cfg.optim.base_lr) == (7, 64, 0.25)
    assert (cfg.model.arch, cfg.loss.name, cfg.loss.eps_d2, cfg.loss.order) == ("resnet18", "byol", 0.1, 2)
    assert (cfg.data.name, cfg.data.root, cfg.model.predictor) == ("digits", "/data/x", False)


def test_int_given_for_float_is_converted_and_bad_types_rejected():
    assert from_dict(PretrainConfig, {"optim": {"base_lr": 1}}).optim.base_lr == 1.0
    assert from_dict(PretrainConfig, parse_overrides(["loss.eps_d2=1e-3"])).loss.eps_d2 == 1e-3
    with pytest.raises(UserError, match="optim.epochs.*expects int"):
        from_dict(PretrainConfig, {"optim": {"epochs": "ten"}})
    with pytest.raises(UserError, match="expects bool"):
        from_dict(PretrainConfig, {"run": {"channels_last": "yes please"}})


def test_unknown_key_lists_close_matches():
    with pytest.raises(UserError) as err:
        from_dict(PretrainConfig, parse_overrides(["optim.epoch=5"]))
    assert "optim.epoch'" in str(err.value) and "optim.epochs" in str(err.value)
    with pytest.raises(UserError, match="unknown config key 'dat'"):
        from_dict(PretrainConfig, {"dat": {}})


def test_malformed_override():
    with pytest.raises(UserError, match="key=value"):
        parse_overrides(["optim.epochs"])


def test_builtin_configs_load_and_match_paper_app_c():
    cfg = load_pretrain_config("imagenet")
    assert cfg.model.arch == "resnet50" and cfg.optim.batch_size == 1024 and cfg.optim.base_lr == 0.5
    assert cfg.optim.weight_decay == 1e-5 and cfg.loss.eps_d2 == 0.06 and cfg.model.ema_momentum == 0.996
    lars = load_pretrain_config("imagenet-800ep")
    assert (lars.optim.name, lars.optim.batch_size, lars.optim.base_lr, lars.optim.weight_decay) == ("lars", 4096, 0.3, 1.5e-6)
    cifar = load_pretrain_config("cifar10", ["optim.epochs=3"])
    assert cifar.model.arch == "cifar_resnet18" and cifar.data.augment == "cifar" and cifar.optim.epochs == 3
    with pytest.raises(UserError, match="did you mean"):
        load_pretrain_config("imagnet")


def test_hash_is_stable_and_sensitive():
    a, b = PretrainConfig(), PretrainConfig()
    assert config_hash(a) == config_hash(b)
    b.loss.order = 3
    assert config_hash(a) != config_hash(b)
    assert to_dict(a)["loss"]["order"] == 4
    assert merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}) == {"a": {"b": 3, "c": 2}}


# ----------------------------------------------------------------------------- validation
import dataclasses  # noqa: E402
import math  # noqa: E402

from mec_eval.config import (EvalDataConfig, EvalOptimConfig, EvalRunConfig, Rule, checked, read_yaml,  # noqa: E402
                             find_named_yaml, validate)


@pytest.mark.parametrize("override, needle", [
    ("optim.base_lr=-1", "'optim.base_lr' must be > 0, got -1.0"),
    ("optim.batch_size=0", "'optim.batch_size' must be >= 2, got 0"),
    ("data.image_size=0", "'data.image_size' must be in [8, 4096], got 0"),
    ("run.device=nosuch", "'run.device' must be auto, cpu, cuda, cuda:N or mps, got 'nosuch'"),
    ("run.device=cuda:x", "'run.device'"),
    ("run.precision=xyz", "'run.precision' must be one of auto, fp32, bf16, fp16, got 'xyz'"),
    ("optim.epochs=0", "'optim.epochs' must be >= 1, got 0"),
    ("optim.epochs=-3", "'optim.epochs' must be >= 1, got -3"),
    ("optim.name=adam", "'optim.name' must be one of sgd, lars, adamw, got 'adam'"),
    ("optim.name=lrs", "did you mean lars"),
    ("data.num_workers=-1", "'data.num_workers' must be in [0, 512], got -1"),
    ("loss.order=0", "'loss.order' must be in [1, 64], got 0"),
    ("loss.eps_d2=0", "'loss.eps_d2' must be > 0, got 0.0"),
    ("loss.eps_d2=-0.1", "'loss.eps_d2' must be > 0"),
    ("optim.momentum=1", "'optim.momentum' must be in [0, 1), got 1.0"),
    ("optim.momentum=-0.1", "'optim.momentum' must be in [0, 1)"),
    ("data.crop_min_scale=0", "'data.crop_min_scale' must be in (0, 1], got 0.0"),
    ("data.crop_min_scale=1.5", "'data.crop_min_scale' must be in (0, 1]"),
    ("loss.eps_d2=.nan", "'loss.eps_d2' must be a finite number, got nan"),
    ("optim.base_lr=.inf", "'optim.base_lr' must be a finite number, got inf"),
    ("optim.weight_decay=-.inf", "'optim.weight_decay' must be a finite number"),
    ("run.seed=-1", "'run.seed' must be in [0, 2147483647], got -1"),
    ("run.save_every=0", "'run.save_every' must be >= 1"),
    ("loss.side=both", "'loss.side' must be one of auto, batch, feature"),
    ("data.augment=simclr", "'data.augment' must be one of byol, cifar"),
    ("model.ema_momentum=1.5", "'model.ema_momentum' must be in [0, 1]"),
    ("loss.temperature=0", "'loss.temperature' must be > 0"),
])
def test_pretrain_values_are_validated(override, needle):
    with pytest.raises(UserError) as err:
        load_pretrain_config("shapes", [override])
    assert needle in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("override", ["run.device=cpu", "run.device=cuda", "run.device=cuda:3", "run.device=mps",
                                      "optim.momentum=0", "data.crop_min_scale=1", "model.ema_momentum=1",
                                      "run.log_every=0", "optim.warmup_epochs=0", "loss.order=1"])
def test_boundary_values_are_accepted(override):
    load_pretrain_config("shapes", [override])


def test_every_builtin_config_and_default_is_valid():
    from mec_eval.utils import resource_dir

    for path in resource_dir("configs").glob("*.yaml"):
        load_pretrain_config(str(path))
    validate(PretrainConfig())
    validate(EvalDataConfig()) and validate(EvalRunConfig()) and validate(EvalOptimConfig())


def test_directly_built_configs_are_validated_too():
    cfg = PretrainConfig()
    cfg.optim.epochs = 0
    with pytest.raises(UserError, match="'optim.epochs' must be >= 1"):
        validate(cfg)
    cfg.optim.epochs, cfg.loss.eps_d2 = 1, math.nan
    with pytest.raises(UserError, match="'loss.eps_d2' must be a finite number"):
        validate(cfg)


def test_eval_sections():
    assert from_dict(EvalDataConfig, {"image_size": 0, "resize_ratio": 0}).image_size == 0  # native / default
    assert from_dict(EvalDataConfig, {"resize_ratio": 1.14}).resize_ratio == 1.14
    for data, needle in [({"batch_size": 0}, "'data.batch_size' must be >= 1"),
                         ({"resize_ratio": 0.5}, "'data.resize_ratio' must be 0 or in [1, 8], got 0.5"),
                         ({"interpolation": "nearest"}, "bilinear, bicubic"),
                         ({"percent": 101}, "'data.percent' must be in [0, 100]"),
                         ({"image_size": -1}, "'data.image_size' must be in [0, 4096]")]:
        with pytest.raises(UserError, match=re.escape(needle)):
            from_dict(EvalDataConfig, data, "data.")
    with pytest.raises(UserError, match="'optim.epochs' and 'optim.steps' are both 0"):
        from_dict(EvalOptimConfig, {"epochs": 0}, "optim.")
    assert from_dict(EvalOptimConfig, {"epochs": 0, "steps": 5}, "optim.").steps == 5
    for optim, needle in [({"head_lr": -1}, "'optim.head_lr' must be > 0"), ({"schedule": "step"}, "cosine-epoch"),
                          ({"lr_scaling": "sqrt"}, "linear, none"), ({"batch_size": 1}, "'optim.batch_size' must be >= 2")]:
        with pytest.raises(UserError, match=re.escape(needle)):
            from_dict(EvalOptimConfig, optim, "optim.")
    assert from_dict(EvalOptimConfig, {"head_lr": None}).head_lr is None
    with pytest.raises(UserError, match="'run.device'"):
        from_dict(EvalRunConfig, {"device": "gpu"}, "run.")


def test_rule_mechanism_for_new_fields():
    @dataclasses.dataclass
    class Toy:
        size: int = checked(4, ge=1)
        grid: list = checked(factory=lambda: [0.1], items=Rule(gt=0), min_items=1)
        jobs: int = checked(-1, ge=1, also=(-1,))
        free: float = 1.0  # no rule: only finiteness is checked

    assert from_dict(Toy, {"jobs": 4}).jobs == 4 and from_dict(Toy, {}).jobs == -1
    for data, needle in [({"size": 0}, "'size' must be >= 1, got 0"), ({"grid": []}, "at least 1"),
                         ({"grid": [0.1, -2]}, "'grid' item 1 must be > 0, got -2"), ({"grid": 3}, "expects a list"),
                         ({"grid": ["a"]}, "item 0 must be > 0, got 'a'"), ({"jobs": 0}, "must be -1 or >= 1, got 0"),
                         ({"free": float("inf")}, "'free' must be a finite number")]:
        with pytest.raises(UserError, match=re.escape(needle)):
            from_dict(Toy, data)


def test_long_hostile_values_stay_one_short_line():
    with pytest.raises(UserError) as err:
        load_pretrain_config("shapes", ["optim.name=" + "x" * 300 + "\n$x$"])
    assert len(str(err.value)) < 200 and "\n" not in str(err.value)


# ----------------------------------------------------------------------------- YAML files
@pytest.mark.parametrize("content, needle", [
    (b"", "is empty"), (b"# only a comment\n\n", "is empty"), (b"\xff\xfe\x00b\x00a\x00d", "is not UTF-8 text"),
    (b"- a\n- b\n", "mapping (key: value lines) at the top level, not a list"),
    (b"optim:\n  epochs: 1\noptim:\n  epochs: 2\n", "duplicate key 'optim'"),
    (b"optim:\n  epochs: 1\n  epochs: 2\n", "duplicate key 'epochs' (line 3"),
    (b"data: !!python/object:os.system {}\n", "Python tags are not allowed"),
    (b"data: [unclosed\n", "is not valid YAML"),
])
def test_bad_yaml_files_are_one_line_user_errors(tmp_path, content, needle):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    with pytest.raises(UserError) as err:
        load_pretrain_config(str(path))
    assert needle in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_yaml_folder_and_missing_file(tmp_path):
    (tmp_path / "cfg.yaml").mkdir()
    with pytest.raises(UserError, match="is a folder, not a YAML file"):
        load_pretrain_config(str(tmp_path / "cfg.yaml"))
    with pytest.raises(UserError, match="is a folder, not a YAML file"):
        find_named_yaml("configs", str(tmp_path))
    with pytest.raises(UserError, match="is a folder, not a YAML file"):
        read_yaml(tmp_path)
    with pytest.raises(UserError, match="not found"):
        load_pretrain_config(str(tmp_path / "nope.yaml"))


@pytest.mark.parametrize("name", ["../../x", "../configs/shapes", "$x$", "ü" * 50, "a" * 300])
def test_hostile_config_names_are_not_paths(name):
    with pytest.raises(UserError) as err:
        load_pretrain_config(name)
    assert "no config named" in str(err.value) and len(str(err.value)) < 400


def test_duplicate_keys_in_override_values():
    with pytest.raises(UserError, match="duplicate key"):
        parse_overrides(["data={name: a, name: b}"])


def test_config_module_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, mec_eval.config as c\n"
            "try: c.load_pretrain_config('shapes', ['optim.epochs=0'])\nexcept c.UserError: pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
