"""load_encoder specs (path, random:, manifest:), provenance, and the manifest download path."""
import hashlib

import pytest
import torch
import yaml

from mec_eval.checkpoints import LAYOUTS, list_manifest, load_encoder, make_canonical, save_canonical
from mec_eval.models import BACKBONES, build_backbone
from mec_eval.utils import UserError, sha256_file


def _tiny_file(path):
    save_canonical(make_canonical("resnet_tiny", build_backbone("resnet_tiny").state_dict(),
                                  meta={"method": "mec", "epoch": 7}), path)
    return path


def test_random_spec_is_reproducible_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first, second = load_encoder("random:resnet_tiny"), load_encoder("random:resnet_tiny")
    assert torch.equal(torch.get_rng_state(), before)
    for key, value in first.backbone.state_dict().items():
        assert torch.equal(value, second.backbone.state_dict()[key]), key
    assert first.provenance() == {"name": "random-resnet_tiny", "path": "random:resnet_tiny", "sha256": None,
                                  "layout": "random", "method": None, "epoch": None, "arch": "resnet_tiny",
                                  "arch_source": "random spec"}
    assert first.feature_dim == 256 and not first.backbone.training


def test_random_spec_errors():
    with pytest.raises(UserError, match="unknown backbone architecture"):
        load_encoder("random:resnet51")
    with pytest.raises(UserError, match="conflicts"):
        load_encoder("random:resnet_tiny", arch="resnet18")


def test_path_spec_provenance(tmp_path):
    path = _tiny_file(tmp_path / "mec_tiny_ep7.pth.tar")
    enc = load_encoder(str(path))
    assert enc.provenance() == {"name": "mec_tiny_ep7", "path": str(path), "sha256": sha256_file(path),
                                "layout": "mec-eval", "method": "mec", "epoch": 7, "arch": "resnet_tiny",
                                "arch_source": "checkpoint file"}
    features = enc.backbone(torch.zeros(2, 3, 32, 32))
    assert features.shape == (2, enc.feature_dim)


def test_generic_file_names_get_the_folder_name(tmp_path):
    path = _tiny_file(tmp_path / "mec_r18_run" / "last.pt")
    assert load_encoder(str(path)).name == "mec_r18_run-last"


def test_missing_path_names_the_spec_forms(tmp_path):
    with pytest.raises(UserError, match="random:<arch> or manifest:<name>"):
        load_encoder(str(tmp_path / "missing.pt"))


@pytest.fixture()
def local_manifest(tmp_path, monkeypatch):
    """A manifest with one file:// entry; MEC_EVAL_MANIFEST/MEC_EVAL_CKPT_DIR point at temp dirs."""
    source = _tiny_file(tmp_path / "published" / "tiny.pt")
    store = tmp_path / "store"

    def write(**overrides):
        entry = {"name": "tiny", "file": "tiny_mec.pt", "url": source.resolve().as_uri(),
                 "sha256": sha256_file(source), "layout": "mec-eval", "arch": "resnet_tiny", "method": "mec",
                 "epochs": 7, "source": "test", **overrides}
        manifest = tmp_path / "manifest.yaml"
        manifest.write_text(yaml.safe_dump({"schema": 1, "checkpoints": [entry]}))
        monkeypatch.setenv("MEC_EVAL_MANIFEST", str(manifest))
        monkeypatch.setenv("MEC_EVAL_CKPT_DIR", str(store))
        return entry

    return write, source, store


def test_manifest_downloads_and_verifies(local_manifest):
    write, source, store = local_manifest
    write()
    enc = load_encoder("manifest:tiny")
    assert (store / "tiny_mec.pt").is_file()
    assert enc.name == "tiny" and enc.sha256 == sha256_file(source) and enc.layout == "mec-eval"
    assert sorted(p.name for p in store.iterdir()) == ["tiny_mec.pt"]  # no partial download left
    assert load_encoder("manifest:tiny").sha256 == enc.sha256  # second call reads the local copy
    assert list_manifest()[0]["present"] is True


def test_manifest_md5_prefix_is_checked(local_manifest):
    write, source, store = local_manifest
    write(sha256=None, md5_prefix=hashlib.md5(source.read_bytes()).hexdigest()[:8])
    assert load_encoder("manifest:tiny").name == "tiny"
    (store / "tiny_mec.pt").unlink()
    write(sha256=None, md5_prefix="00000000")
    with pytest.raises(UserError, match="md5 mismatch"):
        load_encoder("manifest:tiny")
    assert not any(store.iterdir())


def test_manifest_wrong_sha256_is_rejected(local_manifest):
    write, _, store = local_manifest
    write(sha256="0" * 64)
    with pytest.raises(UserError, match="sha256"):
        load_encoder("manifest:tiny")
    assert not (store / "tiny_mec.pt").exists()
    assert not any(p.name.endswith((".download", ".partial")) for p in store.iterdir())


def test_manifest_network_failure_says_where_to_put_the_file(local_manifest, tmp_path):
    write, _, store = local_manifest
    write(url=(tmp_path / "gone.pt").as_uri())
    with pytest.raises(UserError) as err:
        load_encoder("manifest:tiny")
    assert "by hand" in str(err.value) and str(store / "tiny_mec.pt") in str(err.value)


def test_manifest_manual_entry_and_unknown_name(local_manifest):
    write, _, store = local_manifest
    write(download="manual", note="Google Drive")
    with pytest.raises(UserError, match="Google Drive.*by hand"):
        load_encoder("manifest:tiny")
    with pytest.raises(UserError, match=r"unknown checkpoint 'tinny'.*tiny"):
        load_encoder("manifest:tinny")


def test_project_manifest_entries_are_consistent(monkeypatch):
    monkeypatch.delenv("MEC_EVAL_MANIFEST", raising=False)
    entries = list_manifest()
    names = {entry["name"] for entry in entries}
    assert {"mec-r50-100ep", "torchvision-r50-in1k-v1", "mocov2-r50-800ep", "simsiam-r50-100ep",
            "barlowtwins-r50-1000ep", "dino-r50"} <= names
    for entry in entries:
        assert entry["layout"] in LAYOUTS, entry["name"]
        assert entry["arch"] in BACKBONES, entry["name"]
        assert entry["url"].startswith("https://"), entry["name"]
        assert entry["sha256"] is None or len(entry["sha256"]) == 64
    official = next(e for e in entries if e["name"] == "mec-r50-100ep")
    assert official["layout"] == "mec-official" and official["download"] == "manual"


def test_random_spec_with_seed_differs_and_names_the_seed():
    base = load_encoder("random:resnet_tiny")
    seeded = load_encoder("random:resnet_tiny@3")
    again = load_encoder("random:resnet_tiny@3")
    assert seeded.name == "random-resnet_tiny-s3" and base.name == "random-resnet_tiny"
    first = next(iter(seeded.backbone.state_dict()))
    assert not torch.equal(base.backbone.state_dict()[first], seeded.backbone.state_dict()[first])
    assert torch.equal(again.backbone.state_dict()[first], seeded.backbone.state_dict()[first])
    with pytest.raises(UserError, match="seed"):
        load_encoder("random:resnet_tiny@x")
