"""``mec-eval pretrain`` with loss.name=mae|umae|mmae: config checks, a few iterations, resume, evaluation."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from mec_eval.checkpoints import safe_torch_load
from mec_eval.config import load_pretrain_config
from mec_eval.pretrain import mae_engine
from mec_eval.pretrain.main import pretrain
from mec_eval.utils import UserError

TINY = ["optim.epochs=1", "optim.batch_size=16", "run.max_steps_per_epoch=2", "run.device=cpu",
        "mae.decoder_dim=32", "mae.decoder_depth=1", "mae.decoder_heads=2", "run.log_every=1"]


def tiny(*extra: str):
    return load_pretrain_config("digits-mae", [*TINY, *extra])


@pytest.mark.parametrize("loss,term", [("mae", None), ("umae", "uniformity"), ("mmae", "tcr")])
def test_trains_and_saves_a_canonical_vit(tmp_path, loss, term):
    last = pretrain(tiny(f"loss.name={loss}"), tmp_path / loss, quiet=True)
    ckpt = safe_torch_load(last)
    assert (ckpt["format"], ckpt["arch"], ckpt["meta"]["method"]) == ("mec-eval/1", "vit_tiny_p4", loss)
    assert {"cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.11.mlp.fc2.bias", "norm.weight"} <= set(
        ckpt["backbone"])
    assert not any(k.startswith(("decoder", "mask_token")) for k in ckpt["backbone"])
    assert {"mask_token", "decoder_embed.weight"} <= set(ckpt["heads"]["decoder"]) and ckpt["teacher"] is None
    assert (tmp_path / loss / "checkpoint_0001.pt").exists()
    lines = [json.loads(line) for line in (tmp_path / loss / "log.jsonl").read_text().splitlines()]
    steps = [line for line in lines if line.get("event") == "iteration"]
    assert len(steps) == 2 and all("mae" in s for s in steps)
    start = next(line for line in lines if line.get("event") == "start")
    assert start["lr"] == pytest.approx(1.2e-3 * 16 / 256)  # MAE: lr = base_lr * batch / 256
    if term:
        assert all(term in s for s in steps)
        assert all(s["loss"] == pytest.approx(s["mae"] + s[term], rel=1e-4) for s in steps)


def test_collapse_logging_on_the_cls_tokens(tmp_path):
    pretrain(tiny("run.diagnostics_every=1"), tmp_path / "d", quiet=True)
    lines = [json.loads(line) for line in (tmp_path / "d" / "log.jsonl").read_text().splitlines()]
    measured = [line for line in lines if line.get("event") == "diagnostics"]
    assert [m["iteration"] for m in measured] == [0, 1]
    assert all(1.0 <= m["effective_rank"] <= 16 and m["batch"] == 16 for m in measured)


@pytest.mark.slow
def test_resume_after_a_crash_ends_identical(tmp_path, monkeypatch):
    """Killed in iteration 3 of 4 (last.pt saved at the end of epoch 1), the re-run ends bit-identical."""
    settings = ["loss.name=mmae", "optim.epochs=2"]
    straight = safe_torch_load(pretrain(tiny(*settings), tmp_path / "a", quiet=True))

    real_step = mae_engine.mae_step

    def crashing_step(*args):
        step, calls = real_step(*args), []

        def wrapped(model, batch):
            calls.append(1)
            if len(calls) == 4:
                raise RuntimeError("simulated crash")
            return step(model, batch)

        return wrapped

    monkeypatch.setattr(mae_engine, "mae_step", crashing_step)
    with pytest.raises(RuntimeError, match="simulated crash"):
        pretrain(tiny(*settings), tmp_path / "b", quiet=True)
    assert safe_torch_load(tmp_path / "b" / "last.pt")["meta"]["iteration"] == 2
    monkeypatch.setattr(mae_engine, "mae_step", real_step)
    resumed = safe_torch_load(pretrain(tiny(*settings), tmp_path / "b", quiet=True))
    assert resumed["meta"]["iteration"] == 4
    assert [h["epoch"] for h in resumed["meta"]["resume"]["history"]] == [1, 2]
    for ours, ref in ((resumed["backbone"], straight["backbone"]),
                      (resumed["heads"]["decoder"], straight["heads"]["decoder"])):
        assert set(ours) == set(ref) and all(torch.equal(ours[k], ref[k]) for k in ref)


@pytest.mark.slow
def test_checkpoint_runs_in_the_vit_tasks(tmp_path, validate_result):
    """A pre-trained ViT through `mec-eval run` (kNN) and the other feature tasks: linear-fast, the MAE
    linear probe (LARS, BN without affine, blr 0.1 on batch 16384 capped at the training set), diagnostics."""
    from mec_eval.tasks.runner import run_task

    last = pretrain(tiny("loss.name=mmae"), tmp_path / "pre", quiet=True)
    done = subprocess.run([sys.executable, "-m", "mec_eval", "run", "--task", "knn", "--ckpt", str(last), "--out",
                           str(tmp_path / "runs"), "--quiet", "data.name=digits", "run.device=cpu"],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    knn = json.loads(open(done.stdout.strip().splitlines()[-1]).read())
    validate_result(knn)
    assert (knn["checkpoint"]["arch"], knn["checkpoint"]["method"], knn["checkpoint"]["layout"]) == (
        "vit_tiny_p4", "mmae", "mec-eval")
    assert 10.0 < knn["metrics"]["top1"] <= 100.0  # 10 classes: a working CLS feature beats chance
    runs = {task: run_task(task, str(last), tmp_path / "runs", ["data.name=digits", "run.device=cpu", *extra],
                           quiet=True).result
            for task, extra in (("linear-fast", []), ("linear-mae", ["optim.epochs=1"]),
                                ("diagnostics", ["diag.n=200", "diag.n_views=64"]))}
    for result in runs.values():
        validate_result(result)
        assert result["checkpoint"]["arch"] == "vit_tiny_p4"
    assert runs["linear-fast"]["metrics"]["top1"] > 10.0
    probe = runs["linear-mae"]
    assert (probe["config"]["optim"]["name"], probe["scale"]["base_lr"]) == ("lars", 0.1)
    assert probe["scale"]["lr"] == pytest.approx(0.1 * 1257 / 256)  # batch 16384 capped at the 1,257 images
    assert 1.0 <= runs["diagnostics"]["metrics"]["effective_rank"] <= 192  # ViT-Tiny CLS width


@pytest.mark.parametrize("name, loss, warmup", [("imagenet-mae-vitb-200ep", "mae", 40),
                                                  ("imagenet-umae-vitb-200ep", "umae", 40),
                                                  ("imagenet-mmae-vitb-200ep", "mmae", 20)])
def test_imagenet_recipes_hold_the_papers_values(name, loss, warmup):
    """The 200-epoch ViT-B recipes (MAE / U-MAE / M-MAE papers and scripts), every value line with its source."""
    from mec_eval.config import find_named_yaml

    cfg = load_pretrain_config(name)
    m, o = cfg.mae, cfg.optim
    assert (cfg.loss.name, cfg.model.arch, cfg.data.image_size, cfg.data.crop_min_scale) == (loss, "vit_base", 224, 0.2)
    assert (m.mask_ratio, m.norm_pix_loss, m.decoder_dim, m.decoder_depth, m.decoder_heads) == (0.75, True, 512, 8, 16)
    assert (o.name, tuple(o.betas), o.base_lr, o.lr_scaling, o.weight_decay) == ("adamw", (0.9, 0.95), 1.5e-4,
                                                                                 "linear", 0.05)
    assert (o.epochs, o.batch_size, o.warmup_epochs, o.schedule) == (200, 1024, warmup, "cosine")
    if loss == "umae":
        assert m.umae_weight == 0.01
    if loss == "mmae":
        assert (m.mmae_lambda, m.mmae_mu) == (0.01, 1.0)
    values = [line for line in find_named_yaml("configs", name).read_text().splitlines()
              if ":" in line and not line.lstrip().startswith("#") and line.split(":", 1)[1].split("#")[0].strip()]
    assert values and all("#" in line for line in values), [line for line in values if "#" not in line]


@pytest.mark.parametrize("extra, needle", [
    (["model.arch=resnet_tiny"], "loss.name=mae trains a ViT"),
    (["loss.name=simclr"], "is a ViT, which mec-eval pre-trains with loss.name=mae"),
    (["mae.mask_ratio=1.0"], "'mae.mask_ratio' must be in \\[0, 1\\)"),
    (["mae.mask_ration=0.5"], "did you mean mae.mask_ratio"),
    (["mae.decoder_dim=30", "mae.decoder_heads=3"], "must be a multiple of 4"),
    (["mae.mmae_mu=0"], "'mae.mmae_mu' must be > 0"),
    (["loss.regularizer=mec"], "applies to the Siamese losses"),
])
def test_config_errors(extra, needle):
    with pytest.raises(UserError, match=needle):
        tiny(*extra)


def test_arch_check_answers_before_torch_loads():
    code = ("import sys\nfrom mec_eval.config import load_pretrain_config\nfrom mec_eval.utils import UserError\n"
            "try:\n    load_pretrain_config('digits-mae', ['model.arch=resnet50'])\nexcept UserError as e:\n"
            "    print('refused:', e)\nassert 'torch' not in sys.modules, 'torch was imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused: loss.name=mae trains a ViT")


def test_image_size_must_match_the_vit(tmp_path):
    with pytest.raises(UserError, match="set data.image_size=32"):
        pretrain(tiny("data.image_size=64"), tmp_path / "out", quiet=True)
    assert not (tmp_path / "out").exists()


def test_weight_decay_groups_follow_mae():
    """timm 0.3.2 add_weight_decay as MAE calls it: no decay on 1-d params and biases; tokens decayed; pos frozen."""
    net = mae_engine.build_mae_network(tiny())
    no_decay, decay = mae_engine.mae_param_groups(net, 0.05)
    assert (no_decay["weight_decay"], decay["weight_decay"]) == (0.0, 0.05)
    names = {id(p): n for n, p in net.named_parameters()}
    skipped = {names[id(p)] for p in no_decay["params"]}
    decayed = {names[id(p)] for p in decay["params"]}
    assert "backbone.norm.weight" in skipped and "backbone.blocks.0.attn.qkv.bias" in skipped
    assert {"backbone.cls_token", "decoder.mask_token", "backbone.blocks.0.attn.qkv.weight"} <= decayed
    assert "backbone.pos_embed" not in skipped | decayed and "decoder.decoder_pos_embed" not in skipped | decayed
    assert len(skipped | decayed) == sum(p.requires_grad for p in net.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("task, module, extra", [
    ("semi-10pct", "mec_eval.tasks.semi", ["optim.epochs=1"]),
    ("transfer-finetune-fast", "mec_eval.tasks.transfer_finetune",
     ["optim.steps=3", "optim.batch_size=16", "grid.lrs=[0.01]", "grid.wd_times_lr=[0.0]"]),
])
def test_vit_fine_tunes_end_to_end(task, module, extra, tmp_path, monkeypatch, validate_result):
    """semi and transfer fine-tune the whole ViT (CLS feature of width 192 + a linear head), like a ResNet:
    every encoder weight that gets a gradient moves, and the head reads the CLS width."""
    import importlib

    from mec_eval.tasks.runner import run_task

    target = importlib.import_module(module)
    trained = []
    real = target.fit_then_predict

    def spy(model, groups, *args, **kwargs):
        before = {n: p.detach().clone() for n, p in model.backbone.named_parameters()}
        out = real(model, groups, *args, **kwargs)
        trained.append((model, before, [p for g in groups for p in g["params"]]))
        return out

    monkeypatch.setattr(target, "fit_then_predict", spy)
    outcome = run_task(task, "random:vit_tiny_p4", tmp_path / "runs", ["data.name=digits", "run.device=cpu", *extra],
                       quiet=True)
    validate_result(outcome.result)
    assert outcome.result["checkpoint"]["arch"] == "vit_tiny_p4"
    assert trained
    for model, before, optimised in trained:
        head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        assert (head.in_features, head.out_features) == (192, 10)
        ids = {id(p) for p in optimised}
        assert all(id(p) in ids for p in model.backbone.parameters() if p.requires_grad)
        moved = [n for n, p in model.backbone.named_parameters() if not torch.equal(p.detach(), before[n])]
        assert "patch_embed.proj.weight" in moved and "blocks.0.attn.qkv.weight" in moved and "cls_token" in moved
