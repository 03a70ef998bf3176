"""Fixtures shared by the ROS tests (real rclpy and DDS)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def tester():
    """This test module's own ROS side: publishers, subscribers and service clients in one node."""
    from test_node import RosSide   # only once rclpy is known importable: the modules skip before

    t = RosSide()
    yield t
    t.close()
