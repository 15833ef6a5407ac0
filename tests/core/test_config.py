import pytest

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
