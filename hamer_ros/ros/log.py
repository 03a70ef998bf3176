"""Logging for the nodes: throttled warnings, and the core's Python logging into the ROS log."""
from __future__ import annotations

import logging
from typing import Any

from .sync import Throttle


class ThrottledLog:
    """A ROS logger whose warnings repeat at most once per key per period, saying how many
    similar ones it held back in between (bad input arrives per frame; the log must stay readable)."""

    def __init__(self, logger: Any, period: float = 5.0) -> None:
        self.ros = logger
        self._throttle = Throttle(period)

    def warning(self, key: str, text: str, period: float | None = None) -> None:
        ok, held = self._throttle.ready(key, period)
        if ok:
            self.ros.warning(text + (f" [{held} similar message(s) suppressed]" if held else ""))


class ForwardToRos(logging.Handler):
    """Routes the core's Python logging (e.g. "HaMeR model not loaded") into the node's ROS log."""

    def __init__(self, logger: Any) -> None:
        super().__init__(logging.INFO)
        self._ros = logger
        self.muted: set[str] = set()   # logger names whose records the node reports itself

    def emit(self, record: logging.LogRecord) -> None:
        if record.name in self.muted:
            return
        try:
            text = f"[{record.name}] {record.getMessage()}"
            if record.levelno >= logging.ERROR:
                self._ros.error(text)
            elif record.levelno >= logging.WARNING:
                self._ros.warning(text)
            else:
                self._ros.info(text)
        except Exception:  # noqa: BLE001 -- logging must never take the node down
            pass
