"""How the node's hints name a setting: in the syntax the user started it with."""
from __future__ import annotations

import os

# Set by launch/hands.launch.py and `scripts/run.sh node`, which both take launch-style arguments
# (image_topic:=..., checkpoint:=...): the node's hints then name those instead of --ros-args.
STARTED_BY_ENV = "HAMER_ROS_ARGS"


class ArgStyle:
    """How the user passes settings to this process, for hints: launch-style or --ros-args."""

    def __init__(self, launch: bool) -> None:
        self.launch = launch

    def remap(self, name: str, example: str) -> str:
        return f"{name}_topic:={example}" if self.launch else f"-r {name}:={example}"

    def remap_hint(self, name: str, example: str) -> str:
        """A clause that tells how to point the input `name` elsewhere, in the user's syntax."""
        return f"set {self.remap(name, example)}" if self.launch else f"remap {name}:={example}"

    def param(self, name: str, value: str) -> str:
        return f"{name}:={value}" if self.launch else f"-p {name}:={value}"

    @classmethod
    def from_env(cls) -> ArgStyle:
        return cls(os.environ.get(STARTED_BY_ENV, "") == "launch")
