"""Known public checkpoints (``checkpoints/manifest.yaml``): listing, lookup and verified download.

``manifest:<name>`` resolves to ``$MEC_EVAL_CKPT_DIR/<file>`` when that variable is set, else to
``checkpoints/<file>`` in the project. A missing file is downloaded with
``torch.hub.download_url_to_file`` into a temporary name, checked against every hash the upstream
project published (sha256, sha256 prefix as in torchvision file names, md5 prefix as in MoCo's
README), and only then renamed into place, so a half or wrong download never looks like a checkpoint.
``$MEC_EVAL_MANIFEST`` points at another manifest file (private checkpoints, tests).
"""
from __future__ import annotations

import hashlib
import os
import urllib.error
from pathlib import Path

import yaml

from mec_eval.utils import UserError, resource_dir, sha256_file

REQUIRED = ("name", "file", "url", "sha256", "layout", "arch", "method", "epochs", "source")
DOWNLOAD_MODES = ("auto", "manual")


def manifest_path() -> Path:
    """``$MEC_EVAL_MANIFEST`` if set, else ``checkpoints/manifest.yaml`` of the project."""
    override = os.environ.get("MEC_EVAL_MANIFEST")
    return Path(override).expanduser() if override else resource_dir("checkpoints") / "manifest.yaml"


def checkpoint_dir() -> Path:
    """Where manifest checkpoints live: ``$MEC_EVAL_CKPT_DIR`` or the project's ``checkpoints/``."""
    override = os.environ.get("MEC_EVAL_CKPT_DIR")
    return Path(override).expanduser() if override else resource_dir("checkpoints")


def _validate(entry: object, index: int, path: Path) -> dict:
    if not isinstance(entry, dict):
        raise UserError(f"{path}: entry {index} is not a mapping")
    missing = [key for key in REQUIRED if key not in entry]
    if missing:
        raise UserError(f"{path}: entry {entry.get('name', index)!r} lacks {', '.join(missing)}")
    if entry.get("download", "auto") not in DOWNLOAD_MODES:
        raise UserError(f"{path}: entry {entry['name']!r}: download must be one of {DOWNLOAD_MODES}")
    if Path(entry["file"]).name != entry["file"]:
        raise UserError(f"{path}: entry {entry['name']!r}: file must be a bare file name")
    return dict(entry)


def read_manifest(path: str | os.PathLike | None = None) -> list[dict]:
    """All entries of the manifest, validated (required keys, unique names)."""
    path = Path(path) if path is not None else manifest_path()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"checkpoint manifest not found: {path}") from None
    except yaml.YAMLError as err:
        raise UserError(f"checkpoint manifest {path} is not valid YAML: {err}") from None
    entries = data.get("checkpoints") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise UserError(f"{path}: expected a top-level 'checkpoints:' list")
    validated = [_validate(entry, i, path) for i, entry in enumerate(entries)]
    names = [entry["name"] for entry in validated]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserError(f"{path}: duplicate checkpoint names {duplicates}")
    return validated


def list_manifest(path: str | os.PathLike | None = None) -> list[dict]:
    """Entries for ``mec-eval list checkpoints``, each with ``local_path`` and ``present`` added."""
    folder = checkpoint_dir()
    out = []
    for entry in read_manifest(path):
        local = folder / entry["file"]
        out.append({**entry, "local_path": str(local), "present": local.is_file()})
    return out


def get_entry(name: str, path: str | os.PathLike | None = None) -> dict:
    """The manifest entry called ``name``; UserError listing the known names otherwise."""
    entries = read_manifest(path)
    for entry in entries:
        if entry["name"] == name:
            return entry
    known = ", ".join(entry["name"] for entry in entries)
    raise UserError(f"unknown checkpoint '{name}' in the manifest (known: {known}); see `mec-eval list checkpoints`")


def _md5_prefix(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: Path, entry: dict) -> str:
    """Check ``path`` against the entry's published hashes; returns its sha256. UserError on mismatch."""
    actual = sha256_file(path)
    expected = entry.get("sha256") or entry.get("sha256_prefix")
    if expected and not actual.startswith(str(expected).lower()):
        raise UserError(f"{path} is corrupt or not the published file (sha256 mismatch, manifest '{entry['name']}': "
                        f"expected {expected}, got {actual}); delete the file and download it again")
    md5 = entry.get("md5_prefix")
    if md5 and not _md5_prefix(path).startswith(str(md5).lower()):
        raise UserError(f"{path} is corrupt or not the published file (md5 mismatch, manifest '{entry['name']}': "
                        f"expected prefix {md5}); delete the file and download it again")
    return actual


def _by_hand(entry: dict, target: Path) -> str:
    return f"download {entry['url']} by hand and save it as {target} (or set MEC_EVAL_CKPT_DIR)"


def _download(entry: dict, target: Path, progress: bool) -> str:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.download")
    prefix = entry.get("sha256") or entry.get("sha256_prefix")
    try:
        import torch  # only a download needs it; listing the manifest stays torch-free

        torch.hub.download_url_to_file(entry["url"], str(tmp), hash_prefix=prefix, progress=progress)
    except (urllib.error.URLError, OSError, ValueError) as err:
        tmp.unlink(missing_ok=True)
        raise UserError(f"could not download checkpoint '{entry['name']}' ({err}); {_by_hand(entry, target)}") from None
    except RuntimeError as err:  # download_url_to_file's hash_prefix check
        tmp.unlink(missing_ok=True)
        raise UserError(f"downloaded '{entry['name']}' from {entry['url']} but it is corrupt or not the published "
                        f"file (its sha256 does not match the manifest: {str(err).splitlines()[0][:150]}); "
                        "the file was discarded, try again") from None
    try:
        sha256 = verify_file(tmp, entry)
    except UserError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, target)
    return sha256


def fetch_checkpoint(name: str, *, manifest: str | os.PathLike | None = None,
                     progress: bool = True) -> tuple[Path, dict, str]:
    """Local path of manifest checkpoint ``name`` (downloaded if absent), its entry and its sha256.

    The file is verified against the manifest's hashes every time, not only after a download, so
    a corrupted or replaced local copy is caught before it is evaluated.
    """
    entry = get_entry(name, manifest)
    target = checkpoint_dir() / entry["file"]
    if target.is_file():
        return target, entry, verify_file(target, entry)
    if entry.get("download", "auto") == "manual":
        raise UserError(f"checkpoint '{name}' is not present and cannot be downloaded automatically "
                        f"({entry.get('note') or 'manual download'}); {_by_hand(entry, target)}")
    return target, entry, _download(entry, target, progress)
