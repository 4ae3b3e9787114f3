"""Shared fixtures: configuration composition, run folders, offline W&B, real MNIST."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
HAS_SHARED_MNIST = (SHARED_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()

# Seconds a command a test starts may take: generous, because on a busy 2-core machine
# starting Python with torch, Lightning and Hydra alone can take a minute. It only stops a
# hang; the suite's own per-test limit (pytest-timeout, pyproject.toml) is longer.
COMMAND_TIMEOUT = 600

# Overrides that make a composed experiment fast and quiet on CPU.
QUICK = ["logger=none", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "dataset.num_workers=0"]


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch, tmp_path):
    """No W&B account or server: W&B resolves to offline and writes under tmp_path."""
    for variable in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL", "FARCONV_DATA"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))  # no W&B credentials
    yield
    GlobalHydra.instance().clear()


@pytest.fixture
def shared_mnist() -> Path:
    if not HAS_SHARED_MNIST:
        pytest.skip("needs the real MNIST in ../shared/data (absent in a fresh clone)")
    return SHARED_DATA
