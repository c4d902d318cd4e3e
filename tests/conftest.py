"""Shared fixtures: every data dir in tmp_path, no network, a seeded random-init model, windows."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

import pytest

from tests.common import TEST_INPUT_SIZE

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Redirect every imgfinder directory into tmp_path and forbid downloads."""
    from imgfinder import paths

    data = tmp_path / "imgfinder-data"
    monkeypatch.setenv("IMGFINDER_DATA_DIR", str(data))
    monkeypatch.delenv("IMGFINDER_WEIGHTS", raising=False)
    monkeypatch.delenv("IMGFINDER_BACKBONE", raising=False)
    paths.set_data_dir(None)

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    yield data
    paths.set_data_dir(None)


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory) -> Path:
    """A seeded random-init torchvision ResNet50 state dict, saved like a downloaded one."""
    import torch
    from torchvision.models import resnet50

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet50-seed0.pth"
    torch.save(resnet50(weights=None).state_dict(), path)
    return path


@pytest.fixture
def model_config(weights_file):
    from imgfinder.core.extract import ModelConfig

    return ModelConfig(weights=str(weights_file), device="cpu", input_size=TEST_INPUT_SIZE)


@pytest.fixture(scope="session")
def shared_extractor(weights_file):
    """One loaded extractor for tests that only embed (loading costs ~1 s)."""
    from imgfinder.core.extract import Extractor, ModelConfig

    cfg = ModelConfig(weights=str(weights_file), device="cpu", input_size=TEST_INPUT_SIZE)
    return Extractor(cfg)
