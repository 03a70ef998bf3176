"""A CameraInfo subscription whose QoS follows what its publishers offer (both nodes use it).

A latched (reliable, transient-local) CameraInfo published before the node started still
arrives, and a best-effort one is accepted: the QoS is computed from the publishers'
(compat.matching_qos), and the subscription is made again when a publisher with other QoS joins.
"""
from __future__ import annotations

from typing import Any, Callable

from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo

from .compat import SubscriptionEventCallbacks, matching_qos


class CameraInfoSubscription:
    """`refresh()` from a graph timer; `callback(msg)` per CameraInfo; `on_incompatible(qos,
    event)` when a publisher's QoS cannot match, unless subscribing anew will resolve it."""

    def __init__(self, node: Any, callback: Callable[[CameraInfo], None],
                 on_incompatible: Callable[[QoSProfile, Any], None], name: str = "camera_info") -> None:
        self._node = node
        self._name = name
        self._callback = callback
        self._on_incompatible = on_incompatible
        self.topic = node.resolve_topic_name(name)
        self.qos: QoSProfile | None = None
        self.subscription: Any = None

    def offered(self) -> QoSProfile:
        return matching_qos(i.qos_profile for i in self._node.get_publishers_info_by_topic(self.topic))

    def would_change(self) -> bool:
        """Whether the publishers now offer QoS this subscription does not match (it will be made
        again at the next refresh: an incompatibility event until then is no fault to report)."""
        qos = self.offered()
        return self.qos is None or (self.qos.reliability, self.qos.durability) != (qos.reliability, qos.durability)

    def refresh(self) -> bool:
        """Subscribes (again) when there are publishers and their QoS is not the one in use.
        Returns whether the topic has publishers."""
        if self._node.count_publishers(self.topic) == 0:
            return False
        if self.subscription is not None and not self.would_change():
            return True
        self.destroy()
        qos = self.qos = self.offered()
        self.subscription = self._node.create_subscription(
            CameraInfo, self._name, self._callback, qos,
            event_callbacks=SubscriptionEventCallbacks(incompatible_qos=lambda e: self._incompatible(qos, e)))
        return True

    def _incompatible(self, qos: QoSProfile, event: Any) -> None:
        try:
            if self.would_change():
                return
        except Exception:  # noqa: BLE001 -- the graph query failed: report the incompatibility
            pass
        self._on_incompatible(qos, event)

    def destroy(self) -> None:
        if self.subscription is not None:
            self._node.destroy_subscription(self.subscription)
            self.subscription = None
