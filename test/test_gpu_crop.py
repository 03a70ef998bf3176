"""crop_hands_torch (grid_sample on the device) against crop_hands (OpenCV on the CPU).

Runs on CPU tensors everywhere; the CUDA comparison skips without a GPU. Pixel differences are
in grey levels (0..255), after undoing the normalisation.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from hamer_ros.perception.crop import crop_hands
from hamer_ros.perception.gpu_crop import crop_hands_torch, upload_frame

MEAN = 255.0 * np.array([0.485, 0.456, 0.406])
STD = 255.0 * np.array([0.229, 0.224, 0.225])
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def grey(images: torch.Tensor) -> np.ndarray:
    return images.detach().cpu().numpy() * STD[:, None, None] + MEAN[:, None, None]


def per_hand_mean_abs(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return np.abs(grey(a) - grey(b)).mean(axis=(1, 2, 3))


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    """A 720p frame with texture at every scale: smooth colour fields, edges, noise."""
    rng = np.random.default_rng(0)
    coarse = rng.uniform(0, 255, (45, 80, 3)).astype(np.float32)
    img = cv2.resize(coarse, (1280, 720), interpolation=cv2.INTER_CUBIC)
    img[200:400, 300:320] = 255
    img[500:510, :] = 0
    return np.clip(img + rng.normal(0, 15, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def example() -> np.ndarray:
    from conftest import example_photos
    return np.ascontiguousarray(cv2.imread(str(example_photos() / "test1.jpg"))[:, :, ::-1])


SMALL = np.array([[100.0, 200, 180, 300],    # S 213 px
                  [100, 200, 300, 260],      # S 533 px, just below the blur threshold
                  [1200, 600, 1300, 760],    # crosses the right and bottom edges
                  [-50, -20, 60, 90],        # crosses the top-left corner
                  [640, 360, 641, 361],      # degenerate
                  [-900, -900, -800, -800]], np.float32)  # wholly outside
SMALL_RIGHT = np.array([True, False, True, False, True, False])


def test_no_blur_crops_match_crop_hands(scene):
    ref = crop_hands(scene, SMALL, SMALL_RIGHT)
    got = crop_hands_torch(torch.from_numpy(scene), SMALL, SMALL_RIGHT)
    assert got.images.shape == ref.images.shape and got.images.dtype == torch.float32
    diff = per_hand_mean_abs(got.images, ref.images)
    assert diff.max() <= 1.0, diff
    assert diff.max() < 0.5   # measured ~0.25: OpenCV's 1/32 px snapping and fixed-point weights
    np.testing.assert_array_equal(got.centers, ref.centers)
    np.testing.assert_array_equal(got.sizes, ref.sizes)
    np.testing.assert_array_equal(got.is_right, ref.is_right)
    # the reference's float32 matrices vs exact float64 ones (the degenerate box: scale 96)
    np.testing.assert_allclose(got.affines[:4], ref.affines[:4], rtol=1e-5, atol=1e-3)


def test_real_image_both_sides(example):
    height, width = example.shape[:2]
    rng = np.random.default_rng(1)
    xy = rng.uniform(-40, [width, height], (12, 2))
    wh = rng.uniform(15, 140, (12, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    right = rng.random(12) < 0.5
    ref = crop_hands(example, boxes, right)
    got = crop_hands_torch(torch.from_numpy(example), boxes, right)
    assert per_hand_mean_abs(got.images, ref.images).max() <= 1.0


def test_centre_pixel_lands_on_crop_pixel_128():
    img = np.zeros((240, 320, 3), np.uint8)
    img[100, 150] = (255, 128, 64)
    for right in (True, False):
        out = grey(crop_hands_torch(torch.from_numpy(img), np.array([[130.0, 80, 170, 120]]), [right]).images)[0]
        np.testing.assert_allclose(out[:, 128, 128], (255, 128, 64), atol=1e-3)


@pytest.mark.parametrize("right", [True, False])
def test_large_crops_blur_like_crop_hands(scene, right):
    boxes = np.array([[300.0, 100, 600, 500], [800, 200, 1250, 700], [-200, 300, 250, 900]])
    ref = crop_hands(scene, boxes, [right] * 3)
    got = crop_hands_torch(torch.from_numpy(scene), boxes, [right] * 3)
    assert ref.sizes.min() > 563.2   # every crop takes the anti-alias path
    diff = per_hand_mean_abs(got.images, ref.images)
    assert diff.max() <= 1.0, diff
    plain = crop_hands_torch(torch.from_numpy(scene), boxes, [right] * 3, antialias=False)
    ref_plain = crop_hands(scene, boxes, [right] * 3, antialias=False)
    assert per_hand_mean_abs(plain.images, ref_plain.images).max() <= 1.0
    assert per_hand_mean_abs(plain.images, got.images).max() > 1.0   # the blur did something


def test_mixed_blur_and_sharp_keep_box_order(scene):
    boxes = np.array([[300.0, 100, 600, 500], [100, 200, 180, 300], [800, 200, 1250, 700]])
    right = [True, False, False]
    ref = crop_hands(scene, boxes, right)
    got = crop_hands_torch(torch.from_numpy(scene), boxes, right)
    assert per_hand_mean_abs(got.images, ref.images).max() <= 1.0


def test_empty_and_kinds(scene):
    image = torch.from_numpy(scene)
    empty = crop_hands_torch(image, np.zeros((0, 4)), [])
    assert empty.images.shape == (0, 3, 256, 256) and empty.centers.shape == (0, 2) and len(empty) == 0
    t = crop_hands_torch(image, torch.tensor([[10.0, 10, 60, 60]]), torch.tensor([True]))
    n = crop_hands_torch(image, np.array([[10.0, 10, 60, 60]]), True)
    assert isinstance(t.centers, torch.Tensor) and isinstance(t.sizes, torch.Tensor)
    assert isinstance(n.centers, np.ndarray) and n.sizes.dtype == np.float32
    assert torch.equal(t.images, n.images)
    with pytest.raises(ValueError):
        crop_hands_torch(image[..., :2], np.zeros((1, 4)), True)
    with pytest.raises(ValueError):
        crop_hands_torch(image, np.array([[0.0, 0, np.nan, 1]]), True)


def test_float_image(scene):
    boxes = np.array([[100.0, 200, 180, 300]])
    ref = crop_hands(scene.astype(np.float32), boxes, [False])
    got = crop_hands_torch(torch.from_numpy(scene).float(), boxes, [False])
    assert per_hand_mean_abs(got.images, ref.images).max() <= 1.0


def test_upload_frame_on_cpu_shares_memory(scene):
    frame = upload_frame(scene, "cpu")
    assert frame.data_ptr() == scene.ctypes.data and frame.shape == scene.shape


@needs_cuda
def test_cuda_matches_cpu(scene):
    boxes = np.concatenate([SMALL, [[300.0, 100, 600, 500]]])
    right = np.append(SMALL_RIGHT, True)
    image = upload_frame(scene, "cuda")
    assert image.is_cuda and image.dtype == torch.uint8
    got = crop_hands_torch(image, boxes, right)
    cpu = crop_hands_torch(torch.from_numpy(scene), boxes, right)
    assert got.images.is_cuda
    # rounding to whole grey levels can flip on a 1e-5 difference: compare means
    assert per_hand_mean_abs(got.images, cpu.images).max() < 0.05
    assert per_hand_mean_abs(got.images, crop_hands(scene, boxes, right).images).max() <= 1.0
