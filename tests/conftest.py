"""Shared fixtures: the result.json schema from ../shared and small helpers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


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
