"""Shared fixtures: the result.json schema from ../shared and small helpers."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _find_shared() -> Path:
    """The project's ``shared/`` folder (schema, papers, split files) beside the checkout.

    In order: ``$MEC_EVAL_SHARED``; ``../shared``; for a clone made elsewhere (CI clones into a temp
    folder), ``shared/`` beside the repository it was cloned from. Tests that need it skip, naming
    the path, when none exists.
    """
    if os.environ.get("MEC_EVAL_SHARED"):
        return Path(os.environ["MEC_EVAL_SHARED"])
    beside = REPO.parent / "shared"
    if beside.is_dir():
        return beside
    try:
        origin = subprocess.run(["git", "config", "--get", "remote.origin.url"], cwd=REPO, capture_output=True,
                                text=True, timeout=5, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        origin = ""
    if origin and Path(origin).is_dir() and (Path(origin).resolve().parent / "shared").is_dir():
        return Path(origin).resolve().parent / "shared"
    return beside


SHARED = _find_shared()
# Test modules read the location from here (they cannot import conftest under --import-mode=importlib).
os.environ["MEC_EVAL_SHARED"] = str(SHARED)


@pytest.fixture(scope="session")
def result_schema():
    path = SHARED / "schemas" / "result.schema.json"
    if not path.is_file():
        pytest.skip(f"result schema not found at {path} (shared/ must sit beside the checkout)")
    return json.loads(path.read_text())


@pytest.fixture
def validate_result(result_schema):
    """Validate a result dict (or path) against shared/schemas/result.schema.json."""
    jsonschema = pytest.importorskip("jsonschema")

    def check(result):
        if isinstance(result, (str, Path)):
            result = json.loads(Path(result).read_text())
        jsonschema.validate(result, result_schema)
        return result

    return check
