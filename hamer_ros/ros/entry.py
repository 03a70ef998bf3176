"""The process around a node: what `ros2 run`, the installed executables and the launch file
all go through, so they behave alike (the Fast DDS profile, argument errors, Ctrl-C and SIGTERM,
exit codes)."""
from __future__ import annotations

import signal
import sys
from typing import Any, Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

from .dds_profile import PROFILE_ENV, use_shipped_profile
from .parameters import ParameterProblem


class StartupError(RuntimeError):
    """A configuration the node cannot run with; the process logs it (no traceback) and exits 1."""


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_node(name: str, make: Callable[[], Any], args: list[str] | None = None) -> None:
    """Initialises ROS, makes the node, calls its `begin()` when it has one, spins until Ctrl-C,
    SIGTERM or the node's `finalized`, then exits: 0, or 1 after one fatal line for a
    StartupError or a bad parameter."""
    rc = 0
    node = None
    # rclpy's own SIGTERM handler shuts the context down and then chains to the previous handler,
    # which by default kills the process (exit 143, no cleanup). A Python handler in its place
    # turns SIGTERM into the same clean stop as Ctrl-C.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    # Before ROS initialises: Fast DDS reads it when the participant is made.
    profile = use_shipped_profile()
    try:
        try:
            rclpy.init(args=args)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 -- rcl's argument parser raises RCLError
            raise StartupError(
                f"invalid ROS arguments ({e}). A string parameter that looks like YAML needs two levels of "
                "quotes on the command line, e.g. -p 'rois:=\"[{box: [100, 120, 260, 300], side: right}]\"'"
            ) from None
        try:
            node = make()
        except ParameterProblem as e:
            raise StartupError(str(e)) from None
        if profile:
            node.get_logger().info(f"Fast DDS profile for large images: {profile} (set "
                                   f"{PROFILE_ENV[0]} to use your own)")
        if hasattr(node, "begin"):
            node.begin()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while rclpy.ok() and not getattr(node, "finalized", False):   # a lifecycle shutdown ends the process
            executor.spin_once(timeout_sec=0.2)
    except StartupError as e:
        rclpy.logging.get_logger(name).fatal(f"cannot start: {e}")
        rc = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass   # Ctrl-C / SIGTERM: a normal stop
    finally:
        try:
            if node is not None:
                node.close()
                node.destroy_node()
        except (KeyboardInterrupt, Exception):  # noqa: BLE001 -- shutting down anyway
            pass
        rclpy.try_shutdown()
    sys.exit(rc)
