"""sensor_msgs/Image -> uint8 HxWx3 RGB numpy array, without cv_bridge.

cv_bridge is not available everywhere this package runs (it is not on PyPI), and the node only
needs the five 8-bit encodings cameras publish for colour and grey images. The image's bytes are
wrapped with `np.frombuffer` (no copy); `step` (row padding) is honoured through strides, so an
rgb8 image comes back as a view of the message's buffer. The other encodings need one pass to
reorder or drop channels, which OpenCV does in a single vectorised copy.

Duck-typed on purpose: anything with `encoding`, `width`, `height`, `step` and `data` works (the
unit tests use a plain namespace), so this module needs no ROS at import time.
"""
from __future__ import annotations

from typing import Any

import numpy as np

# encoding -> channels; is_bigendian is irrelevant for 8-bit data.
CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
SUPPORTED_ENCODINGS = tuple(CHANNELS)
_SUPPORTED_TEXT = ", ".join(SUPPORTED_ENCODINGS)


class ImageConversionError(ValueError):
    """A frame that cannot become an RGB array. `key` groups messages of the same cause, so a
    caller can throttle its log per cause (an unsupported encoding repeats every frame)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _encoding_fix(encoding: str) -> str:
    """Why an encoding is not accepted, and what usually fixes it at the source."""
    e = encoding.lower()
    if e.startswith("bayer"):
        return ("raw Bayer images need demosaicing first: run image_proc's debayer node and remap "
                "image:=<camera>/image_color (or image_rect_color)")
    if e in ("16uc1", "32fc1", "mono16", "16sc1"):
        return ("this looks like a depth or 16-bit image; remap image:= to the camera's colour "
                "stream (e.g. <camera>/color/image_raw)")
    if e in ("yuv422", "uyvy", "yuyv", "yuv422_yuy2", "nv12", "nv21"):
        return ("convert YUV first (image_proc, or set the driver's pixel format to rgb8/bgr8)")
    if e.endswith("16"):
        return "only 8 bits per channel are supported; set the driver to an 8-bit format"
    return "convert it first (image_proc, or set the camera driver to rgb8 or bgr8)"


def image_to_rgb(msg: Any) -> np.ndarray:
    """A uint8 HxWx3 RGB array for an Image message (see module docstring).

    rgb8 with any row padding: a view of `msg.data` (no copy; read-only when the buffer is).
    bgr8, rgba8, bgra8, mono8: one contiguous copy. Raises ImageConversionError with a specific
    message for unsupported encodings, empty images, a too-small step or a short buffer.
    """
    encoding = str(msg.encoding)
    width, height, step = int(msg.width), int(msg.height), int(msg.step)
    key = encoding.strip().lower()
    channels = CHANNELS.get(key)
    if channels is None:
        raise ImageConversionError(
            f"encoding:{encoding}",
            f"image encoding '{encoding}' is not supported (supported: {_SUPPORTED_TEXT}); "
            f"{_encoding_fix(encoding)}")
    if width <= 0 or height <= 0:
        raise ImageConversionError(
            "empty", f"empty image ({width}x{height} px, encoding {encoding}): width and height must "
            "be > 0; the publisher sent an image without pixels")
    row_bytes = width * channels
    if step < row_bytes:
        raise ImageConversionError(
            "step", f"image step {step} bytes is smaller than width x channels = {width} x {channels} "
            f"= {row_bytes} bytes ({encoding}); the publisher filled `step` wrongly")
    data = msg.data
    size = len(data)
    need = step * height
    if size < need:
        raise ImageConversionError(
            "data", f"image data holds {size} bytes but step x height = {step} x {height} = {need} "
            f"({width}x{height} {encoding}); the message is truncated or its size fields are wrong")
    # frombuffer: no copy of array.array / bytes / memoryview. `count` ignores trailing bytes.
    rows = np.frombuffer(data, dtype=np.uint8, count=need).reshape(height, step)
    # Slicing off the padding keeps a strided view; the reshape to pixels needs no copy either.
    pixels = rows[:, :row_bytes].reshape(height, width, channels)
    if key == "rgb8":
        return pixels
    import cv2  # one C pass per conversion; imported here so the module loads without OpenCV

    code = {"bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB, "bgra8": cv2.COLOR_BGRA2RGB,
            "mono8": cv2.COLOR_GRAY2RGB}[key]
    src = pixels[:, :, 0] if channels == 1 else pixels
    return cv2.cvtColor(src, code)
