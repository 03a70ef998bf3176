"""Every rclpy name that differs between the ROS 2 releases hamer_ros runs on, in one place.

Humble (JetPack 6, Python 3.10) is the oldest. The rest of hamer_ros uses only names Humble has:
test/test_humble_api.py checks that against an inventory of Humble's rclpy and accepts a newer
name only here, behind a feature check. Choices made so that no check is needed at all:
- CameraInfo's QoS is computed from the publishers' offered QoS (`matching_qos`), not with the
  BEST_AVAILABLE policies (Iron and later);
- parameter changes are validated and applied in one `add_on_set_parameters_callback` (rclpy
  calls it after its own type, range and read-only checks; nothing can reject the change after
  it), not with Iron's post-set callbacks.
"""
from __future__ import annotations

from typing import Iterable

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

try:   # Iron and later; Humble's rclpy.qos_event is a deprecated alias since Iron
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:   # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

__all__ = ["SubscriptionEventCallbacks", "matching_qos", "NEWER_THAN_HUMBLE"]

# What Iron and later added that hamer_ros does without, named here and nowhere else: the tests
# that hide them (test/ros/run_node_as_humble.py) or plant them (test/test_humble_api.py) read them.
EVENT_HANDLER_MODULE = "rclpy.event_handler"        # Humble: rclpy.qos_event
POST_SET_CALLBACK = "add_post_set_parameters_callback"
BEST_AVAILABLE = "BEST_AVAILABLE"                    # a member of the QoS policy enums
NEWER_THAN_HUMBLE = (EVENT_HANDLER_MODULE, f"rclpy.node.Node.{POST_SET_CALLBACK}",
                     f"rclpy.qos.ReliabilityPolicy.{BEST_AVAILABLE}", f"rclpy.qos.DurabilityPolicy.{BEST_AVAILABLE}")


def matching_qos(offered: Iterable[QoSProfile], depth: int = 10) -> QoSProfile:
    """The subscription QoS that matches every publisher and receives the most, as Iron's
    BEST_AVAILABLE policies choose it: reliable unless one publisher is best effort, transient
    local (a latched message sent before we joined still arrives) when every publisher is."""
    offered = list(offered)
    reliable = all(q.reliability == ReliabilityPolicy.RELIABLE for q in offered)
    latched = bool(offered) and all(q.durability == DurabilityPolicy.TRANSIENT_LOCAL for q in offered)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
