import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("HAMER_ROS_SHARED", Path(__file__).resolve().parents[2] / "shared"))
EXAMPLES = SHARED / "data" / "hamer_examples"


@pytest.fixture(scope="session")
def mano_path(tmp_path_factory) -> Path:
    from hamer_ros.testing import write_synthetic_mano
    return write_synthetic_mano(tmp_path_factory.mktemp("mano") / "MANO_RIGHT.pkl")


@pytest.fixture(scope="session")
def tiny_model(mano_path):
    from hamer_ros.testing import make_tiny_model
    return make_tiny_model(seed=0, mano_path=mano_path)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_model) -> Path:
    from hamer_ros.testing import write_checkpoint
    return write_checkpoint(tmp_path_factory.mktemp("hamer_ckpts"), tiny_model)


@pytest.fixture
def examples() -> Path:
    if not EXAMPLES.is_dir():
        pytest.skip(f"example images not found at {EXAMPLES} (set HAMER_ROS_SHARED)")
    return EXAMPLES
