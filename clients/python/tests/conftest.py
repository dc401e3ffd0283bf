"""Fixtures shared by the unit and integration tests."""

from __future__ import annotations

import json
from typing import Any

import pytest

from helpers import VECTORS


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    return dict(json.loads(VECTORS.read_text(encoding="utf-8")))
