"""The nodes' parameters in ROS: declared with descriptors from the settings tables
(hamer_ros/settings.py), validated at start and at run time."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from ..settings import ParamSpec

# Parameters rclpy declares on every node itself.
ROS_OWN_PARAMETERS = frozenset({"use_sim_time", "start_type_description_service"})


class ParameterProblem(ValueError):
    """A declared parameter's value the node cannot start with (the message says which and why)."""


def declare_parameters(node: Any, specs: tuple[ParamSpec, ...]) -> dict[str, Any]:
    """Declares each parameter with its descriptor and validates the value the node starts with
    (params file, -p, launch). Returns name -> value; ParameterProblem for a bad value."""
    values = {}
    for spec in specs:
        try:
            p = node.declare_parameter(spec.name, spec.default, descriptor(spec))
        except Exception as e:  # noqa: BLE001 -- rclpy raises several types; all mean "bad file"
            kind = type(spec.default).__name__
            raise ParameterProblem(f"parameter '{spec.name}' (type {kind}, default {spec.default!r}): {e}. "
                                   "Check the params file (a double needs a decimal point, e.g. 1.0)") from None
        problem = spec.validate(p.value)
        if problem:
            raise ParameterProblem(f"parameter '{spec.name}': {problem}")
        values[spec.name] = p.value
    return values


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    d = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
    if spec.choices:
        d.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.range is not None:
        # bool is an int subclass: only real numbers get a range.
        if isinstance(spec.default, float):
            d.floating_point_range = [FloatingPointRange(from_value=float(spec.range[0]),
                                                         to_value=float(spec.range[1]), step=0.0)]
        elif isinstance(spec.default, int) and not isinstance(spec.default, bool):
            d.integer_range = [IntegerRange(from_value=int(spec.range[0]), to_value=int(spec.range[1]), step=1)]
    return d


@dataclass(frozen=True)
class Options:
    """The runtime-changeable settings the inference thread reads per frame; replaced as a whole,
    so it always reads a consistent set."""

    tf_prefix: str
    publish_tf: bool
    publish_joint_frames: bool
    publish_vertices: bool
    image_timeout: float
    camera_info_wait: float
    use_depth: bool


OPTION_NAMES = tuple(Options.__dataclass_fields__)
