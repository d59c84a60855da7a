"""Shared fixtures: the real CT data beside the repository, and small oblique grids."""

from pathlib import Path

import numpy as np
import pytest

from deepliver.volume import Grid

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


@pytest.fixture(autouse=True)
def private_user_models(tmp_path_factory, monkeypatch):
    """Tests never see (or write) the user's own model registry (~/.deepliver/models); the
    variable is inherited by the `deepliver` processes the tests start."""
    monkeypatch.setenv("DEEPLIVER_USER_MODELS", str(tmp_path_factory.mktemp("user-models")))


@pytest.fixture
def real_data() -> Path:
    if not REAL_DATA.is_dir():
        pytest.skip(f"real CT data not found at {REAL_DATA} (a checkout without ../shared)")
    return REAL_DATA


def rotation(axis, degrees: float) -> np.ndarray:
    """Rodrigues rotation matrix about ``axis``."""
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    angle = np.deg2rad(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


@pytest.fixture
def oblique_grid() -> Grid:
    """Anisotropic, oblique about two axes, with an origin that is not round."""
    direction = rotation([1, 0.4, 0.2], 23.0)
    return Grid((12, 17, 21), (-101.37, 42.113, 17.9), (0.71, 0.93, 2.5), direction)
