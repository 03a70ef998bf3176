"""Runs hand_mesh_node with every rclpy name that Humble lacks hidden, then the node's own main().

    python test/ros/run_node_as_humble.py --ros-args ...

What Humble lacks comes from test/data/rclpy_humble_api.json (ros2/rclpy's humble branch): the
public methods of Node and LifecycleNode, the members of the QoS enums, and whole rclpy modules.
rclpy itself is loaded first, so its own internals keep working; code imported afterwards (the
node) sees Humble's API: a missing method raises AttributeError, a missing module ImportError,
a missing enum member AttributeError. rclpy.qos_event, Humble's home of the event callbacks,
is provided as Humble has it. One line on stderr lists what was hidden.
"""
from __future__ import annotations

import importlib
import json
import pkgutil
import re
import sys
import types
from enum import Enum
from pathlib import Path

INVENTORY = Path(__file__).resolve().parents[1] / "data" / "rclpy_humble_api.json"


def _humble_members(modules: dict, qualified: str) -> set[str]:
    mod, _, name = qualified.rpartition(".")
    seen, todo, out = set(), [f"{mod}.{name}"], set()
    while todo:
        c = todo.pop()
        m, _, n = c.rpartition(".")
        info = modules.get(m, {}).get("classes", {}).get(n)
        if info is None or c in seen:
            continue
        seen.add(c)
        out |= set(info["members"])
        todo += info["bases"]
    return out


def hide_newer_than_humble() -> list[str]:
    modules = json.loads(INVENTORY.read_text())["modules"]
    import rclpy
    import rclpy.lifecycle
    import rclpy.node
    import rclpy.qos

    from hamer_ros.ros.compat import SubscriptionEventCallbacks
    events = importlib.import_module(SubscriptionEventCallbacks.__module__)   # where this rclpy keeps them
    hidden = []
    # whole modules Humble does not have
    for info in pkgutil.walk_packages(rclpy.__path__, "rclpy."):
        if info.name not in modules and not info.name.rpartition(".")[2].startswith("_"):
            try:
                importlib.import_module(info.name)   # rclpy's own users keep their reference
            except Exception:  # noqa: BLE001 -- a module this install cannot load is hidden anyway
                pass
            parent, _, leaf = info.name.rpartition(".")
            sys.modules[info.name] = None           # a later `import` raises ImportError
            if hasattr(sys.modules.get(parent), leaf):
                delattr(sys.modules[parent], leaf)
            hidden.append(info.name)
    # Humble's spelling of the event callbacks' module, with the names Humble's holds
    qos_event = types.ModuleType("rclpy.qos_event")
    for k in modules["rclpy.qos_event"]["names"]:
        if hasattr(events, k):
            setattr(qos_event, k, getattr(events, k))
    sys.modules["rclpy.qos_event"] = rclpy.qos_event = qos_event
    # public methods of the node classes, except those rclpy itself calls (Jazzy's parameter
    # services call Node.list_parameters, for one): they stay for rclpy, not for the node
    rclpy_source = "\n".join(p.read_text() for p in Path(rclpy.__file__).parent.rglob("*.py"))
    for cls, name in ((rclpy.node.Node, "rclpy.node.Node"),
                      (rclpy.lifecycle.LifecycleNode, "rclpy.lifecycle.node.LifecycleNode")):
        humble = _humble_members(modules, name)
        for klass in cls.__mro__:
            if not klass.__module__.startswith("rclpy"):
                continue
            for attr in list(vars(klass)):
                if (not attr.startswith("_") and attr not in humble
                        and not re.search(rf"\.{attr}\(", rclpy_source)):
                    delattr(klass, attr)
                    hidden.append(f"{klass.__module__}.{klass.__name__}.{attr}")
    # members of the QoS enums
    for attr in dir(rclpy.qos):
        klass = getattr(rclpy.qos, attr)
        if not (isinstance(klass, type) and issubclass(klass, Enum)):
            continue
        humble = set(modules["rclpy.qos"]["classes"].get(attr, {}).get("members", []))
        for member in list(klass.__members__):
            if member not in humble and attr in modules["rclpy.qos"]["classes"]:
                klass._member_map_.pop(member, None)
                if member in klass._member_names_:
                    klass._member_names_.remove(member)
                if member in vars(klass):
                    type.__delattr__(klass, member)
                hidden.append(f"rclpy.qos.{attr}.{member}")
    return hidden


if __name__ == "__main__":
    hidden = hide_newer_than_humble()
    print(f"run_node_as_humble: hid {len(hidden)} names newer than Humble: {', '.join(hidden)}",
          file=sys.stderr, flush=True)
    from hamer_ros.ros.node import main

    main()
