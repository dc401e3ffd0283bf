"""Fixtures shared by the unit and integration tests."""

from __future__ import annotations

import json
from typing import Any

import pytest

from helpers import VECTORS


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    return dict(json.loads(VECTORS.read_text(encoding="utf-8")))


@pytest.fixture(autouse=True)
def _no_system_cache_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default cache directory (/var/lib/tars-config) is never created by
    a test run, even as root: each test gets its own stand-in."""
    from config_manager_client import settings

    monkeypatch.setattr(
        settings, "SYSTEM_CACHE_DIR", tmp_path_factory.mktemp("var-lib") / "tars-config"
    )
