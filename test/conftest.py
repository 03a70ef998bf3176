from pathlib import Path

import pytest

from hamer_ros.examples import find_examples, not_found_message

DATA = Path(__file__).resolve().parent / "data"


def example_photos() -> Path:
    """The reference project's example photos, by the demo's own look-up (never downloads)."""
    found = find_examples()
    if found is None:
        pytest.skip(not_found_message())
    return found


@pytest.fixture(scope="session")
def mano_path(tmp_path_factory) -> Path:
    from hamer_ros_testing import write_synthetic_mano
    return write_synthetic_mano(tmp_path_factory.mktemp("mano") / "MANO_RIGHT.pkl")


@pytest.fixture(scope="session")
def tiny_model(mano_path):
    from hamer_ros_testing import make_tiny_model
    return make_tiny_model(seed=0, mano_path=mano_path)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_model) -> Path:
    from hamer_ros_testing import write_checkpoint
    return write_checkpoint(tmp_path_factory.mktemp("hamer_ckpts"), tiny_model)


@pytest.fixture
def examples() -> Path:
    return example_photos()
