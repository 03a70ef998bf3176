"""sensor_msgs/Image -> uint8 HxWx3 RGB numpy array (and a depth image -> float32 metres), without
cv_bridge.

cv_bridge is not available everywhere this package runs (it is not on PyPI), and the node only
needs the five 8-bit encodings cameras publish for colour and grey images. The image's bytes are
wrapped in an array without a copy, `step` (row padding) honoured through strides, so an rgb8
image comes back as a view of the message's buffer. The other encodings need one pass to
reorder or drop channels, which OpenCV does in a single vectorised copy.

Duck-typed on purpose: anything with `encoding`, `width`, `height`, `step` and `data` works (the
unit tests use a plain namespace), so this module needs no ROS at import time.

Depth images (`depth_image_to_metres`) are the two encodings REP-118 names for depth: 16UC1 in
millimetres (RealSense, Azure Kinect, OAK-D) and 32FC1 in metres (most simulators, stereo_image_proc);
mono16 is taken as 16UC1 because some drivers label their millimetre images that way.
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


def _pixels(msg: Any, encoding: str, dtype: Any, channels: int, what: str, key: str = "") -> np.ndarray:
    """A [H,W,channels] view of an Image message's pixels (no copy: the row padding is skipped
    through strides; read-only when the buffer is), once its size fields agree with its buffer.
    Raises ImageConversionError (keys `<key>empty`, `<key>step`, `<key>data`) naming the problem."""
    width, height, step = int(msg.width), int(msg.height), int(msg.step)
    if width <= 0 or height <= 0:
        raise ImageConversionError(
            f"{key}empty", f"empty {what} ({width}x{height} px, encoding {encoding}): width and height must be > 0; "
            "the publisher sent an image without pixels")
    dtype = np.dtype(dtype)
    pixel = dtype.itemsize * channels
    row_bytes = width * pixel
    if step < row_bytes:
        raise ImageConversionError(
            f"{key}step", f"{what} step {step} bytes is smaller than width x bytes per pixel = {width} x {pixel} = "
            f"{row_bytes} bytes ({encoding}); the publisher filled `step` wrongly")
    size = len(msg.data)
    need = step * (height - 1) + row_bytes     # the last row's padding may be left out
    if size < need:
        raise ImageConversionError(
            f"{key}data", f"{what} data holds {size} bytes but needs {need} ({width}x{height} {encoding}, step "
            f"{step}); the message is truncated or its size fields are wrong")
    return np.ndarray((height, width, channels), dtype=dtype, buffer=msg.data, strides=(step, pixel, dtype.itemsize))


def image_to_rgb(msg: Any) -> np.ndarray:
    """A uint8 HxWx3 RGB array for an Image message (see module docstring).

    rgb8 with any row padding: a view of `msg.data` (no copy; read-only when the buffer is).
    bgr8, rgba8, bgra8, mono8: one contiguous copy. Raises ImageConversionError with a specific
    message for unsupported encodings, empty images, a too-small step or a short buffer.
    """
    encoding = str(msg.encoding)
    key = encoding.strip().lower()
    channels = CHANNELS.get(key)
    if channels is None:
        raise ImageConversionError(
            f"encoding:{encoding}",
            f"image encoding '{encoding}' is not supported (supported: {_SUPPORTED_TEXT}); "
            f"{_encoding_fix(encoding)}")
    pixels = _pixels(msg, encoding, np.uint8, channels, "image")
    if key == "rgb8":
        return pixels
    import cv2  # one C pass per conversion; imported here so the module loads without OpenCV

    code = {"bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB, "bgra8": cv2.COLOR_BGRA2RGB,
            "mono8": cv2.COLOR_GRAY2RGB}[key]
    src = pixels[:, :, 0] if channels == 1 else pixels
    return cv2.cvtColor(src, code)


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """A uint8 HxWx3 RGB array for a CompressedImage (JPEG or PNG colour image). Raises
    ImageConversionError for compressed depth (compressedDepth) and for data that does not decode."""
    fmt = str(msg.format)
    if "compresseddepth" in fmt.lower().replace(" ", ""):
        raise ImageConversionError("compressed_depth", f"'{fmt}' is a compressed depth image, not a colour one")
    import cv2

    data = np.frombuffer(memoryview(msg.data), dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise ImageConversionError("undecodable", f"the {len(data)} bytes of this '{fmt}' image do not decode "
                                                  "(truncated or not an image)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# depth encoding -> (dtype of one sample, metres per unit)
DEPTH_ENCODINGS = {"16uc1": (np.uint16, 0.001), "mono16": (np.uint16, 0.001), "32fc1": (np.float32, 1.0)}
SUPPORTED_DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")
_DEPTH_TEXT = "16UC1 or mono16 (millimetres), 32FC1 (metres)"


def _depth_encoding_fix(encoding: str) -> str:
    """What an unsupported depth encoding usually means, and the fix at the source."""
    e = encoding.lower()
    if e in CHANNELS or e.startswith("bayer") or e in ("yuv422", "uyvy", "yuyv", "nv12", "nv21"):
        return ("this is a colour image, not depth: remap depth:= to the depth image aligned to the colour "
                "camera (e.g. /camera/aligned_depth_to_color/image_raw)")
    if e in ("32fc2", "32fc3", "16uc3", "16uc4", "64fc1", "16sc1", "8uc1"):
        return ("convert it to 16UC1 millimetres or 32FC1 metres first (e.g. depth_image_proc's "
                "convert_metric node for 32FC1)")
    return "publish the depth aligned to the colour camera as 16UC1 millimetres or 32FC1 metres"


def depth_image_to_metres(msg: Any) -> np.ndarray:
    """A float32 HxW array in metres for a depth Image message (see module docstring); NaN where the
    camera measured nothing (0, NaN, inf, negative).

    is_bigendian and row padding (`step`) are honoured. Raises ImageConversionError (keys
    `depth_encoding:<enc>`, `depth_empty`, `depth_step`, `depth_data`) naming the problem and the
    fix for any other encoding, an empty image, a too-small step or a short buffer.
    """
    from ..perception.depth import depth_to_metres

    encoding = str(msg.encoding)
    known = DEPTH_ENCODINGS.get(encoding.strip().lower())
    if known is None:
        raise ImageConversionError(
            f"depth_encoding:{encoding}",
            f"depth image encoding '{encoding}' is not supported (supported: {_DEPTH_TEXT}); "
            f"{_depth_encoding_fix(encoding)}")
    dtype, scale = known
    order = ">" if int(getattr(msg, "is_bigendian", 0)) else "<"
    # depth_to_metres makes the one copy
    raw = _pixels(msg, encoding, np.dtype(dtype).newbyteorder(order), 1, "depth image", "depth_")[:, :, 0]
    return depth_to_metres(raw, scale)
