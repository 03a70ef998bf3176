"""The node's depth input without ROS: a depth Image message -> float32 metres (ros/image.py) and the
pairing of a colour frame with its aligned depth image (ros/sync.py's DepthSync). Both modules are
duck-typed, so plain namespaces stand in for messages."""
from __future__ import annotations

import array
from types import SimpleNamespace

import numpy as np
import pytest

from hamer_ros.ros.image import ImageConversionError, depth_image_to_metres
from hamer_ros.ros.sync import DepthFrame, DepthSync

# ------------------------------------------------------------------------------------------------
# conversion


def _depth_msg(values: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False):
    """An Image-like object holding `values` (H x W) with `pad` bytes of row padding."""
    h, w = values.shape
    dtype = values.dtype.newbyteorder(">" if bigendian else "<")
    rows = values.astype(dtype).view(np.uint8).reshape(h, w * values.itemsize)
    if pad:
        rows = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    return SimpleNamespace(encoding=encoding, width=w, height=h, step=w * values.itemsize + pad,
                           data=array.array("B", rows.tobytes()), is_bigendian=int(bigendian))


MM = np.array([[0, 500, 1234], [65535, 800, 1]], np.uint16)
MM_AS_M = np.array([[np.nan, 0.5, 1.234], [65.535, 0.8, 0.001]], np.float32)


@pytest.mark.parametrize("encoding", ["16UC1", "mono16"])
@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("bigendian", [False, True])
def test_16uc1_is_millimetres(encoding, pad, bigendian):
    out = depth_image_to_metres(_depth_msg(MM, encoding, pad, bigendian))
    assert out.dtype == np.float32 and out.shape == (2, 3)
    np.testing.assert_allclose(out, MM_AS_M, rtol=1e-6)   # 0 (no measurement) -> NaN


@pytest.mark.parametrize("pad", [0, 5])
@pytest.mark.parametrize("bigendian", [False, True])
def test_32fc1_is_metres(pad, bigendian):
    m = np.array([[0.0, 0.5, np.nan], [np.inf, -1.0, 2.25]], np.float32)
    out = depth_image_to_metres(_depth_msg(m, "32FC1", pad, bigendian))
    assert out.dtype == np.float32
    # 0, NaN, inf and negative values are no measurement
    np.testing.assert_array_equal(out, np.array([[np.nan, 0.5, np.nan], [np.nan, np.nan, 2.25]], np.float32))


def test_the_same_distance_in_both_encodings():
    mm = np.full((4, 5), 800, np.uint16)
    a = depth_image_to_metres(_depth_msg(mm, "16UC1"))
    b = depth_image_to_metres(_depth_msg(np.full((4, 5), 0.8, np.float32), "32FC1"))
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_the_result_owns_its_memory():
    msg = _depth_msg(MM, "16UC1")
    out = depth_image_to_metres(msg)
    assert not np.shares_memory(out, np.frombuffer(msg.data, np.uint8)) and out.flags.writeable


@pytest.mark.parametrize("encoding, fix", [("rgb8", "this is a colour image"), ("bgr8", "this is a colour image"),
                                           ("32FC3", "convert it to 16UC1"), ("16SC1", "convert it to 16UC1"),
                                           ("weird", "16UC1 millimetres or 32FC1 metres")])
def test_other_encodings_are_refused_naming_the_fix(encoding, fix):
    msg = _depth_msg(MM, "16UC1")
    msg.encoding = encoding
    with pytest.raises(ImageConversionError) as e:
        depth_image_to_metres(msg)
    text = str(e.value)
    assert f"depth image encoding '{encoding}' is not supported" in text
    assert "16UC1 or mono16 (millimetres), 32FC1 (metres)" in text and fix in text
    assert e.value.key == f"depth_encoding:{encoding}"


def test_bad_sizes_are_refused():
    msg = _depth_msg(MM, "16UC1")
    short = SimpleNamespace(**{**vars(msg), "data": msg.data[:-3]})
    with pytest.raises(ImageConversionError, match=r"holds 9 bytes but needs 12") as e:
        depth_image_to_metres(short)
    assert e.value.key == "depth_data"
    with pytest.raises(ImageConversionError, match=r"step 5 bytes is smaller than width x bytes per pixel = 3 x 2"):
        depth_image_to_metres(SimpleNamespace(**{**vars(msg), "step": 5}))
    with pytest.raises(ImageConversionError, match=r"empty depth image \(0x2 px"):
        depth_image_to_metres(SimpleNamespace(**{**vars(msg), "width": 0}))


# ------------------------------------------------------------------------------------------------
# pairing

MS = 1_000_000
W, H = 320, 240


def _frame(stamp_ns: int, frame_id: str = "color", w: int = W, h: int = H, tag: str = "") -> DepthFrame:
    return DepthFrame(stamp_ns, frame_id, w, h, "16UC1", tag or stamp_ns)


def test_no_depth_yet():
    sync = DepthSync("/cam/depth", remap_hint="set depth_topic:=/x")
    m = sync.match(100 * MS, "color", W, H, topic_has_publishers=False)
    assert m.depth is None and not m.problem.skip and m.problem.key == "depth_none"
    assert "no depth image on /cam/depth yet (the topic has no publisher)" in m.problem.text
    assert "set depth_topic:=/x" in m.problem.text and "RGB alone" in m.problem.text
    assert not sync.may_still_come(100 * MS, "color")    # nothing is streaming: nothing to wait for


def test_exact_stamp():
    sync = DepthSync(tolerance=0.02)
    for t in (90, 100, 110):
        sync.add(_frame(t * MS))
    m = sync.match(100 * MS, "color", W, H)
    assert m.problem is None and m.depth.stamp_ns == 100 * MS and m.offset_ns == 0


@pytest.mark.parametrize("colour_ms, expect_ms", [(104, 100), (107, 110), (95, 90), (118, 110), (82, 90)])
def test_nearest_within_tolerance(colour_ms, expect_ms):
    sync = DepthSync(tolerance=0.01)
    for t in (90, 100, 110):
        sync.add(_frame(t * MS))
    m = sync.match(colour_ms * MS, "color", W, H)
    assert m.problem is None and m.depth.stamp_ns == expect_ms * MS
    assert m.offset_ns == (expect_ms - colour_ms) * MS


def test_nothing_within_tolerance_says_how_far_the_nearest_is():
    sync = DepthSync("/d", tolerance=0.01)
    sync.add(_frame(100 * MS))
    m = sync.match(125 * MS, "color", W, H)
    assert m.depth is None and m.problem.key == "depth_stamp:color" and not m.problem.skip
    assert "within depth_tolerance (10 ms)" in m.problem.text and "25.0 ms before it" in m.problem.text
    m = sync.match(70 * MS, "color", W, H)
    assert m.depth is None and "30.0 ms after it" in m.problem.text
    # tolerance 0: the exact stamp only, and the tolerance can change at run time
    sync.tolerance = 0.0
    assert sync.match(100 * MS, "color", W, H).depth is not None
    assert sync.match(100 * MS + 1, "color", W, H).depth is None


def test_another_frame_is_never_used():
    sync = DepthSync("/d", remap_hint="remap depth:=/y")
    sync.add(_frame(100 * MS, frame_id="depth_optical"))
    m = sync.match(100 * MS, "color", W, H)
    assert m.depth is None and m.problem.key == "depth_frame:color" and not m.problem.skip
    assert "frame 'color'" in m.problem.text and "are of frame 'depth_optical'" in m.problem.text
    assert "remap depth:=/y" in m.problem.text
    # the same sync serves each frame_id its own images
    sync.add(_frame(100 * MS, frame_id="color", tag="mine"))
    assert sync.match(100 * MS, "color", W, H).depth.msg == "mine"
    assert sync.match(100 * MS, "depth_optical", W, H).depth.msg == 100 * MS
    # colour has older depth of its own, but another frame's is of this time: that is the cause
    sync.add(_frame(200 * MS, frame_id="depth_optical"))
    m = sync.match(200 * MS, "color", W, H)
    assert m.problem.key == "depth_frame:color" and "depth images of this time are of frame 'depth_optical'" \
        in m.problem.text


def test_another_size_is_never_used():
    sync = DepthSync("/d")
    sync.add(_frame(100 * MS, w=640, h=480))
    m = sync.match(100 * MS, "color", W, H)
    assert m.depth is None and m.problem.key == "depth_size:color"
    assert "is 640x480 px but the colour image is 320x240 px" in m.problem.text


def test_buffer_keeps_the_newest_per_frame_and_few_frames():
    sync = DepthSync(tolerance=0.0, buffer=3, max_frames=2)
    for t in range(10):
        sync.add(_frame(t * MS))
    assert sync.match(6 * MS, "color", W, H).depth is None          # pushed out
    assert sync.match(7 * MS, "color", W, H).depth is not None
    sync.add(_frame(0, frame_id="b"))
    sync.add(_frame(0, frame_id="c"))                                 # "color" is the least recently fed
    assert sync.match(9 * MS, "color", W, H).problem.key == "depth_frame:color"
    assert sync.received == 12
    sync.reset()
    assert sync.match(0, "b", W, H).problem.key == "depth_none"


def test_may_still_come():
    sync = DepthSync()
    sync.add(_frame(100 * MS))
    assert sync.may_still_come(133 * MS, "color")        # the stream runs, this stamp's image not yet here
    assert not sync.may_still_come(100 * MS, "color")    # here already
    assert not sync.may_still_come(90 * MS, "color")     # a later one arrived: nothing nearer will
    assert not sync.may_still_come(133 * MS, "other")    # no depth of that frame at all
    sync.add(_frame(133 * MS))
    assert not sync.may_still_come(133 * MS, "color")
