"""Test support, outside the estimator's package and sharing no constant or hand model with it:
synthetic stand-ins for the licensed files (in their official formats), synthetic hands and an
independent hand surface with a depth-sensor model, for tests and benchmarks.

`write_synthetic_mano` writes a MANO-shaped pickle (778 vertices, 16 joints, chumpy-style shapedirs,
scipy-sparse J_regressor) with a plausible hand skeleton and random surface, without chumpy.
`write_checkpoint` writes a Lightning-style checkpoint in the official folder layout, with the
reference's key names and a pickled foreign config object, without that package installed.
Nothing here is the real MANO model or real HaMeR weights.
"""
from __future__ import annotations

import contextlib
import pickle
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import scipy.sparse
import torch
import yaml

from hamer_ros.model.checkpoint import to_reference_key
from hamer_ros.model.config import HaMeRConfig
from hamer_ros.model.mano import FINGERTIP_VERTICES, NUM_FACES, NUM_VERTICES, PARENTS


@contextlib.contextmanager
def fake_modules(*classes: tuple[str, str]) -> Iterator[dict[str, type]]:
    """Temporarily register classes under foreign module paths so pickle writes those names."""
    made, added = {}, []
    for module, name in classes:
        for i in range(1, module.count(".") + 2):
            part = ".".join(module.split(".")[:i])
            if part not in sys.modules:
                sys.modules[part] = types.ModuleType(part)
                added.append(part)
        cls = type(name, (object,), {"__module__": module, "__qualname__": name})
        setattr(sys.modules[module], name, cls)
        made[f"{module}.{name}"] = cls
    try:
        yield made
    finally:
        for part in reversed(added):
            sys.modules.pop(part, None)


def synthetic_mano_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """A hand-like MANO-shaped model: joints laid out as a right hand, vertices around the bones."""
    rng = np.random.default_rng(seed)
    joints = np.zeros((16, 3))
    # fingers along +x from the wrist; base offsets across y; thumb angled off to +y
    bases = {1: (0.09, 0.025), 4: (0.095, 0.0), 10: (0.09, -0.022), 7: (0.08, -0.042)}
    for first, (x, y) in bases.items():
        for k in range(3):
            joints[first + k] = (x + 0.03 * k, y, 0.0)
    for k in range(3):
        joints[13 + k] = (0.03 + 0.028 * k, 0.04 + 0.02 * k, -0.01)
    tips = {744: 15, 320: 3, 443: 6, 554: 12, 671: 9}   # fingertip vertex → its distal joint
    owner = rng.integers(0, 16, NUM_VERTICES)
    for v, j in tips.items():
        owner[v] = j
    v_template = joints[owner] + rng.normal(0, 0.008, (NUM_VERTICES, 3))
    for v, j in tips.items():
        v_template[v] = joints[j] + (joints[j] - joints[PARENTS[j]]) * 0.8
    weights = np.full((NUM_VERTICES, 16), 0.01)
    weights[np.arange(NUM_VERTICES), owner] = 1.0
    weights /= weights.sum(1, keepdims=True)
    jreg = np.zeros((16, NUM_VERTICES))
    for j in range(16):
        idx = np.flatnonzero(owner == j)
        jreg[j, idx] = 1.0 / len(idx)
    kintree = np.array([[4294967295] + list(PARENTS[1:]), list(range(16))], dtype=np.int64)
    faces = np.stack([rng.permutation(NUM_VERTICES)[:3] for _ in range(NUM_FACES)]).astype(np.uint32)
    return {
        "v_template": v_template,
        "shapedirs": rng.normal(0, 0.002, (NUM_VERTICES, 3, 10)),
        "posedirs": rng.normal(0, 0.001, (NUM_VERTICES, 3, 135)),
        "J_regressor": jreg,
        "weights": weights,
        "kintree_table": kintree,
        "f": faces,
        "hands_components": np.linalg.qr(rng.normal(size=(45, 45)))[0],
        "hands_mean": rng.normal(0, 0.1, 45),
        "hands_coeffs": rng.normal(0, 1, (1554, 45)),
        "J": joints,
    }


def write_synthetic_mano(path: str | Path, seed: int = 0) -> Path:
    """Write arrays in the official MANO_RIGHT.pkl structure: protocol 2, chumpy Select shapedirs
    (value = a.x.ravel()[idxs].reshape(preferred_shape), a.x holding 20 components), a scipy
    csc J_regressor, a set-valued entry — all without chumpy installed."""
    arr = synthetic_mano_arrays(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with fake_modules(("chumpy.ch", "Ch"), ("chumpy.reordering", "Select"),
                      ("scipy.sparse.csc", "csc_matrix")) as fake:
        full = np.concatenate([arr["shapedirs"], np.zeros((NUM_VERTICES, 3, 10))], axis=2)
        ch = fake["chumpy.ch.Ch"]()
        ch.__dict__.update(x=full)
        select = fake["chumpy.reordering.Select"]()
        idxs = np.arange(full.size).reshape(full.shape)[:, :, :10].ravel()
        select.__dict__.update(a=ch, idxs=idxs, preferred_shape=(NUM_VERTICES, 3, 10))
        sparse = scipy.sparse.csc_matrix(arr["J_regressor"])
        csc = fake["scipy.sparse.csc.csc_matrix"]()
        csc.__dict__.update(data=sparse.data, indices=sparse.indices, indptr=sparse.indptr,
                            _shape=sparse.shape, maxprint=50)
        data = dict(arr, shapedirs=select, J_regressor=csc, bs_style="lbs", bs_type="lrotmin",
                    unused_set={"a"})
        path.write_bytes(pickle.dumps(data, protocol=2))
    return path


def synthetic_reference_state_dict(model: torch.nn.Module, mano_arrays: dict[str, np.ndarray] | None = None,
                                   seed: int = 0) -> dict[str, torch.Tensor]:
    """The model's weights under the reference names, plus discriminator/mano/initialized entries."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {"initialized": torch.tensor(True)}
    sd.update({to_reference_key(k): v.detach().clone() for k, v in model.network_state_dict().items()})
    sd["discriminator.D_conv1.weight"] = torch.randn(32, 9, 1, 1, generator=g)
    sd["discriminator.D_alljoints_out.bias"] = torch.randn(1, generator=g)
    mano = model.mano
    sd.update({"mano.v_template": mano.v_template.clone(), "mano.shapedirs": mano.shapedirs.clone(),
               "mano.posedirs": mano.posedirs.clone(), "mano.J_regressor": mano.J_regressor.clone(),
               "mano.lbs_weights": mano.lbs_weights.clone(), "mano.faces_tensor": mano.faces.clone(),
               "mano.parents": mano.parents.clone(),
               "mano.extra_joints_idxs": torch.tensor(FINGERTIP_VERTICES)})
    return sd


def write_checkpoint(root: str | Path, model: torch.nn.Module, extra: dict | None = None) -> Path:
    """Write `<root>/checkpoints/hamer.ckpt` + `<root>/model_config.yaml` as the official release
    lays them out; `hyper_parameters` holds a pickled `yacs.config.CfgNode` (a dict subclass)."""
    root = Path(root)
    (root / "checkpoints").mkdir(parents=True, exist_ok=True)
    (root / "model_config.yaml").write_text(yaml.safe_dump(model.cfg.to_yaml_dict()))
    with fake_modules(("yacs.config", "CfgNode")) as fake:
        cfg_node_cls = type("CfgNode", (dict,), {"__module__": "yacs.config", "__qualname__": "CfgNode"})
        sys.modules["yacs.config"].CfgNode = cfg_node_cls
        cfg = cfg_node_cls(MODEL=cfg_node_cls(IMAGE_SIZE=model.cfg.image_size))
        cfg.__dict__["_immutable"] = False
        ckpt = {"epoch": 0, "global_step": 1, "pytorch-lightning_version": "2.0.0",
                "state_dict": synthetic_reference_state_dict(model),
                "hyper_parameters": {"cfg": cfg}, **(extra or {})}
        torch.save(ckpt, root / "checkpoints" / "hamer.ckpt")
        del fake
    return root / "checkpoints" / "hamer.ckpt"


def make_tiny_model(seed: int = 0, mano_path: str | Path | None = None) -> "torch.nn.Module":
    """A random-weight tiny HaMeR on the synthetic MANO (or the given MANO file)."""
    from hamer_ros.model import HaMeR, ManoLayer
    from hamer_ros.model.mano import load_mano_arrays

    torch.manual_seed(seed)
    arrays = load_mano_arrays(mano_path) if mano_path else synthetic_mano_arrays(seed)
    if not mano_path:
        arrays["shapedirs"] = arrays["shapedirs"][:, :, :10]
    model = HaMeR(HaMeRConfig.tiny(), ManoLayer(arrays)).eval()
    # Small read-outs: predictions near the mean parameters, so random hands land inside their
    # boxes (as a trained model's would) instead of metres away.
    with torch.no_grad():
        for layer in (model.head.dec_pose, model.head.dec_betas, model.head.dec_cam):
            layer.weight.mul_(0.02)
            layer.bias.zero_()
    return model


# Random hands and rotations for the camera tests and benchmarks/camera.py.
def random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
                     2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
                     2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1).reshape(n, 3, 3)


def rotations_by(rng: np.random.Generator, n: int, angle_deg: float) -> np.ndarray:
    """n rotations by exactly `angle_deg` about random axes (a network's rotation error)."""
    axis = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    a = np.radians(angle_deg)
    W = np.zeros((n, 3, 3))
    W[:, 0, 1], W[:, 0, 2], W[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    W[:, 1, 0], W[:, 2, 0], W[:, 2, 1] = axis[:, 2], -axis[:, 1], axis[:, 0]
    return np.eye(3) + np.sin(a) * W + (1 - np.cos(a)) * (W @ W)


def hand_skeletons(rng: np.random.Generator, n: int) -> np.ndarray:
    """Rough 21-joint hands (OpenPose order, wrist at the origin, metres), random flexion and
    orientation."""
    bases = np.array([[-0.030, 0.025], [-0.022, 0.090], [-0.003, 0.095], [0.015, 0.090], [0.031, 0.080]])
    fan = np.radians([-50.0, -10.0, 0.0, 8.0, 18.0])
    bones = np.array([[0.035, 0.030, 0.025], [0.040, 0.025, 0.020], [0.045, 0.028, 0.022],
                      [0.042, 0.026, 0.020], [0.032, 0.020, 0.018]])
    joints = np.zeros((n, 21, 3))
    for f in range(5):
        pos = np.zeros((n, 3))
        pos[:, :2] = bases[f]
        joints[:, 1 + 4 * f] = pos
        bend = np.zeros(n)
        for b in range(3):
            bend = bend + rng.uniform(0.0, np.radians(60.0), n)
            direction = np.stack([np.sin(fan[f]) * np.cos(bend), np.cos(fan[f]) * np.cos(bend), -np.sin(bend)], -1)
            pos = pos + bones[f, b] * direction
            joints[:, 2 + 4 * f + b] = pos
    return joints @ random_rotations(rng, n).transpose(0, 2, 1)



def hand_in_view(rng: np.random.Generator, distance: float, K: np.ndarray, size: tuple[int, int],
                 margin: float = 20.0) -> np.ndarray:
    """One random hand [21,3] (hand_skeletons) whose wrist is `distance` away along the ray of a
    random pixel, every joint at least 0.2 m away and at least `margin` px inside the image."""
    k = np.asarray(K, np.float64)
    k_inv = np.linalg.inv(k)
    while True:
        joints = hand_skeletons(rng, 1)[0]      # a new pose too: one reaching far forward never fits at 0.3 m
        ray = k_inv @ np.array([rng.uniform(0, size[0]), rng.uniform(0, size[1]), 1.0])
        hand = joints + ray / np.linalg.norm(ray) * distance
        if hand[:, 2].min() < 0.2:
            continue
        uv = hand @ k.T
        uv = uv[:, :2] / uv[:, 2:]
        if (uv.min(0) >= margin).all() and (uv.max(0) <= np.array(size) - 1 - margin).all():
            return hand

# Metamorphic views of a real photo: the answer is known exactly without ground truth.
def rotation_yaw_pitch(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """Camera rotation: yaw about the camera's y axis (down), then pitch about its x axis (right)."""
    y, p = np.radians(yaw_deg), np.radians(pitch_deg)
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    return ry @ rx


def rotated_view(image: np.ndarray, K: np.ndarray, R: np.ndarray, keep_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The image a pinhole camera at the same centre, turned by R (a point X of the original camera
    is R^T X in the new one), would have taken: an exact homography H = K' R^T K^-1. The new
    principal point is moved so that pixel `keep_px` stays where it was (so the hands stay in
    view); focal lengths and size are kept. Returns (image, K')."""
    import cv2

    K = np.asarray(K, dtype=np.float64)
    ray = np.linalg.solve(K, np.array([keep_px[0], keep_px[1], 1.0]))
    e = R.T @ ray
    K2 = K.copy()
    K2[0, 2] = keep_px[0] - K[0, 0] * e[0] / e[2]
    K2[1, 2] = keep_px[1] - K[1, 1] * e[1] / e[2]
    H = K2 @ R.T @ np.linalg.inv(K)
    h, w = image.shape[:2]
    return cv2.warpPerspective(image, H, (w, h), flags=cv2.INTER_LINEAR), K2


# Synthetic depth images for the RGB-D tests and benchmarks/depth.py: hands rendered exactly
# (thick skeletons or meshes, z-buffered, numpy only) and a stereo camera's faults added on top.
# Pixel centres lie at integer (u, v), as in OpenCV's K; depth is the z coordinate, not ray length.
_NEAR = 1e-3                  # m: nothing nearer than this to the camera plane is drawn
_CHUNK = 1 << 16              # candidate pixels per vectorised pass: its temporaries stay in cache (2x faster)
_CELL = 4                     # px, side of the cells in which capsules are found before per-pixel tests
# The simulator's own hand topology, written out here (not taken from perception/): OpenPose
# order, each finger a chain wrist -> 4 joints; the palm between the wrist and the knuckles.
_HAND_BONES = np.array([(0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10),
                        (10, 11), (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18),
                        (18, 19), (19, 20)])
_PALM_FAN = np.array([(0, 5, 9), (0, 9, 13), (0, 13, 17)])
# The palm's outline (wrist, 5, 9, 13, 17): its wrist edges are bones already, the rest are added.
_PALM_EDGES = np.array([(5, 9), (9, 13), (13, 17)])


def _box_pixels(lo: np.ndarray, hi: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pixel centre inside each primitive's image box [lo, hi] ([P,2] px), clipped to the
    image, as flat arrays (primitive index, u, v)."""
    width, height = size
    lo = np.where(np.isfinite(lo), lo, 0.0)
    hi = np.where(np.isfinite(hi), hi, -1.0)
    x0 = np.clip(np.ceil(lo[:, 0]), 0, width).astype(np.int64)
    x1 = np.clip(np.floor(hi[:, 0]) + 1, 0, width).astype(np.int64)
    y0 = np.clip(np.ceil(lo[:, 1]), 0, height).astype(np.int64)
    y1 = np.clip(np.floor(hi[:, 1]) + 1, 0, height).astype(np.int64)
    w, h = np.maximum(x1 - x0, 0), np.maximum(y1 - y0, 0)
    idx, k = _expand(w * h)
    return idx, x0[idx] + k % w[idx], y0[idx] + k // w[idx]


def _expand(count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat (i, j) for every i and j in 0..count[i]-1."""
    owner = np.repeat(np.arange(len(count)), count)
    return owner, np.arange(len(owner)) - np.repeat(np.cumsum(count) - count, count)


def _chunks(count: np.ndarray) -> Iterator[np.ndarray]:
    """Primitive indices in groups of about _CHUNK candidate pixels (a huge one goes alone)."""
    group = np.cumsum(count) // _CHUNK
    for g in np.unique(group):
        yield np.flatnonzero(group == g)


def _box_count(lo: np.ndarray, hi: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    span = np.clip(np.nan_to_num(hi - lo, nan=0.0), 0, max(size)) + 1
    return (span[:, 0] * span[:, 1]).astype(np.int64)


def _rays(k_inv: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the directions through pixel centres, scaled to z = 1 so that a ray's parameter
    is its depth (k_inv: the inverse of a pinhole's K, last row 0 0 1)."""
    return k_inv[0, 0] * u + k_inv[0, 1] * v + k_inv[0, 2], k_inv[1, 0] * u + k_inv[1, 1] * v + k_inv[1, 2]


def _zbuffer(depth: np.ndarray, labels: np.ndarray, pix: np.ndarray, z: np.ndarray, label: np.ndarray) -> None:
    """Keep, per pixel, the nearest of the buffer's and these hits (flat pixel index, depth, label)."""
    z = z.astype(np.float32)
    flat_depth, flat_labels = depth.reshape(-1), labels.reshape(-1)
    np.minimum.at(flat_depth, pix, z)
    won = z <= flat_depth[pix]
    flat_labels[pix[won]] = label[won]


def _new_buffers(size: tuple[int, int], background: float | None) -> tuple[np.ndarray, np.ndarray]:
    width, height = size
    # The wall starts in the buffer: what lies behind it is hidden, as by a real wall.
    far = np.inf if background is None else background
    return np.full((height, width), far, np.float32), np.full((height, width), -1, np.int16)


def _finish(depth: np.ndarray) -> np.ndarray:
    depth[np.isinf(depth)] = np.nan
    return depth


def _capsule_table(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per capsule a-b, the rows the ray test reads: a, e = b - a, e·e, a·e, a·a, b·b ([10,P])."""
    e = b - a
    dot = lambda p, q: np.einsum("ij,ij->i", p, q)    # noqa: E731
    return np.concatenate([a.T, e.T, np.stack([dot(e, e), dot(a, e), dot(a, a), dot(b, b)])])


def _gather(table: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """table[:, idx] with contiguous rows (numpy's own table[:, idx] strides them, ~10x slower to use)."""
    return np.take(table, idx, axis=1)


def _capsule_hits(dx: np.ndarray, dy: np.ndarray, cap: np.ndarray, r2: np.ndarray | float) -> np.ndarray:
    """Depth where rays t·(dx, dy, 1) enter capsules (columns of _capsule_table, radius² r2); inf:
    a miss. Exact: a capsule is a finite cylinder and two end spheres, and its entry is the first
    of theirs (an entry through the cylinder's flat ends lies inside a sphere, never first)."""
    ax, ay, az, ex, ey, ez, ee, ae, aa, bb = cap
    dd = dx * dx + dy * dy + 1.0
    da = dx * ax + dy * ay + az
    de = dx * ex + dy * ey + ez
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.fmin(_sphere_entry(dd, da, aa - r2), _sphere_entry(dd, da + de, bb - r2))
        # |t·d - a|² less its square along e equals r²: a quadratic in t, scaled by e·e.
        qa = ee * dd - de * de
        qb = ee * da - de * ae
        disc = qb * qb - qa * (ee * (aa - r2) - ae * ae)
        tc = (qb - np.sqrt(disc)) / qa
        s = (tc * de - ae) / ee           # where along the bone the hit lies, 0..1 on it
        body = (qa > 1e-12 * ee * dd) & (s >= 0) & (s <= 1) & (tc > _NEAR)
    t = np.where(body, np.fmin(t, tc), t)
    return np.where(np.isnan(t), np.inf, t)


def _sphere_entry(dd: np.ndarray, dc: np.ndarray, cc_r2: np.ndarray) -> np.ndarray:
    """Entry depth of rays t·d into spheres (d·d, d·centre, |centre|² - r²); NaN: a miss."""
    t = (dc - np.sqrt(dc * dc - dd * cc_r2)) / dd
    return np.where(t > _NEAR, t, np.nan)


def _capsule_boxes(a: np.ndarray, b: np.ndarray, radius: float, K: np.ndarray,
                   size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Image boxes [P,2] holding each capsule's projection: those of its 3D bounding box's corners
    (the whole image when that box reaches the camera plane, where projection is unbounded)."""
    lo3, hi3 = np.minimum(a, b) - radius, np.maximum(a, b) + radius
    ends = np.stack([lo3, hi3])
    corners = np.stack([np.stack([ends[i, :, 0], ends[j, :, 1], ends[k, :, 2]], -1)
                        for i in (0, 1) for j in (0, 1) for k in (0, 1)], 1)
    uvw = corners @ K.T
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = uvw[..., :2] / uvw[..., 2:3]
    lo, hi = uv.min(1), uv.max(1)
    whole = lo3[:, 2] <= _NEAR
    lo[whole], hi[whole] = 0.0, np.array(size, dtype=float) - 1
    return lo, hi


def _cells_hit(lo: np.ndarray, hi: np.ndarray, cap: np.ndarray, r_cell: np.ndarray, k_inv: np.ndarray,
               size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(capsule, cell column, cell row) of the _CELL² pixel cells of each box that may see it: the
    ray through the cell's centre enters the capsule widened to r_cell."""
    cells = (-(-size[0] // _CELL), -(-size[1] // _CELL))
    idx, cu, cv = _box_pixels(np.floor(np.ceil(lo) / _CELL), np.floor(np.floor(hi) / _CELL), cells)
    centre = (_CELL - 1) / 2
    dx, dy = _rays(k_inv, cu * _CELL + centre, cv * _CELL + centre)
    hit = np.isfinite(_capsule_hits(dx, dy, _gather(cap, idx), r_cell[idx] ** 2))
    return idx[hit], cu[hit], cv[hit]


def _cell_pixels(idx: np.ndarray, cu: np.ndarray, cv: np.ndarray,
                 size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pixels (primitive index, u, v) of the cells (primitive index, cell column, cell row)."""
    k = np.arange(_CELL ** 2)
    u = (cu[:, None] * _CELL + k % _CELL).ravel()
    v = (cv[:, None] * _CELL + k // _CELL).ravel()
    idx = np.repeat(idx, _CELL ** 2)
    inside = (u < size[0]) & (v < size[1])
    return idx[inside], u[inside], v[inside]


def _draw_capsules(depth: np.ndarray, labels: np.ndarray, a: np.ndarray, b: np.ndarray, label: np.ndarray,
                   radius: float, K: np.ndarray) -> None:
    """Z-buffer capsules a-b. Most of a bone's image box misses it, so the boxes are first tested
    per cell of _CELL² pixels, on capsules widened by what the cell's rays can stray at the
    capsule's far end (two rays at depth z lie at most z·|K⁻¹·offset| apart), and only the
    pixels of the cells that pass are tested exactly."""
    size = (depth.shape[1], depth.shape[0])
    k_inv = np.linalg.inv(K)
    cap = _capsule_table(a, b)
    stray = (_CELL - 1) / 2 * np.sqrt(2) * np.linalg.norm(k_inv[:2, :2], 2)
    r_cell = radius + (np.maximum(a[:, 2], b[:, 2]) + radius) * stray
    lo, hi = _capsule_boxes(a, b, radius, K, size)
    cells = [_cells_hit(lo[p], hi[p], cap[:, p], r_cell[p], k_inv, size) + (p,)
             for p in _chunks(_box_count(lo, hi, size) // _CELL ** 2)]
    idx, u, v = _cell_pixels(np.concatenate([p[i] for i, _, _, p in cells]),
                             np.concatenate([c[1] for c in cells]), np.concatenate([c[2] for c in cells]), size)
    for s in range(0, len(idx), _CHUNK):
        i, uu, vv = idx[s:s + _CHUNK], u[s:s + _CHUNK], v[s:s + _CHUNK]
        z = _capsule_hits(*_rays(k_inv, uu, vv), _gather(cap, i), radius * radius)
        hit = np.isfinite(z)
        _zbuffer(depth, labels, (vv * size[0] + uu)[hit], z[hit], label[i][hit])


def _draw_triangles(depth: np.ndarray, labels: np.ndarray, tri: np.ndarray, label: np.ndarray, K: np.ndarray) -> None:
    """Z-buffer triangles [T,3,3] (camera frame, both sides) into depth/labels, row span by row
    span. 1/z is affine in the image over a plane, so interpolating it gives each pixel centre the
    plane's exact depth. Triangles reaching the camera plane are skipped rather than clipped."""
    size = (depth.shape[1], depth.shape[0])
    in_front = (tri[:, :, 2] > _NEAR).all(1)
    uvw = tri[in_front] @ K.T
    uv = uvw[..., :2] / uvw[..., 2:3]
    e1, e2 = uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    seen = np.abs(area) > 1e-12          # edge-on triangles cover nothing (and have no slope)
    uv, label = uv[seen], label[in_front][seen]
    slope = _inverse_depth_slopes(uv, 1.0 / tri[in_front][seen][:, :, 2])
    lo, hi = uv.min(1), uv.max(1)
    for part in _chunks(_box_count(lo, hi, size)):
        t, v, u0, n = _row_spans(uv[part], size)
        # along a span 1/z grows by the slope in u per pixel
        start = slope[part[t], 0] * (u0 - uv[part[t], 0, 0]) + slope[part[t], 1] * (v - uv[part[t], 0, 1]) \
            + slope[part[t], 2]
        span, k = _expand(n)
        z = 1.0 / (start[span] + slope[part[t[span]], 0] * k)
        _zbuffer(depth, labels, v[span] * size[0] + u0[span] + k, z, label[part[t[span]]])


def _inverse_depth_slopes(uv: np.ndarray, inv_z: np.ndarray) -> np.ndarray:
    """[T,3]: per triangle (with an area in the image), 1/z = a·(u - u0) + b·(v - v0) + 1/z0 over
    its plane, as (a, b, 1/z0)."""
    e1, e2 = uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    d1, d2 = inv_z[:, 1] - inv_z[:, 0], inv_z[:, 2] - inv_z[:, 0]
    return np.stack([(d1 * e2[:, 1] - d2 * e1[:, 1]) / area, (d2 * e1[:, 0] - d1 * e2[:, 0]) / area, inv_z[:, 0]], -1)


def _row_spans(uv: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per triangle [T,3,2] (px) and pixel row through it: (triangle, row, first column, number of
    columns) of the pixel centres inside it, edges included."""
    width, height = size
    y = uv[..., 1]
    top = np.clip(np.ceil(y.min(1)), 0, height).astype(np.int64)
    bottom = np.clip(np.floor(y.max(1)) + 1, 0, height).astype(np.int64)
    t, k = _expand(np.maximum(bottom - top, 0))
    v = top[t] + k
    left, right = np.full(len(v), np.inf), np.full(len(v), -np.inf)
    for i, j in ((0, 1), (1, 2), (2, 0)):
        # each edge from its upper end, so that the two triangles sharing it cut it at the same x
        # (a pixel centre on it then belongs to both: no cracks)
        p, q = uv[:, i], uv[:, j]
        swap = (q[:, 1] < p[:, 1]) | ((q[:, 1] == p[:, 1]) & (q[:, 0] < p[:, 0]))
        a, b = np.where(swap[:, None], q, p)[t], np.where(swap[:, None], p, q)[t]
        dy = b[:, 1] - a[:, 1]
        on = (v >= a[:, 1]) & (v <= b[:, 1]) & (dy > 0)
        x = a[:, 0] + (v - a[:, 1]) * (b[:, 0] - a[:, 0]) / np.where(dy > 0, dy, 1.0)
        left, right = np.where(on, np.minimum(left, x), left), np.where(on, np.maximum(right, x), right)
    crossed = np.isfinite(left)
    u0 = np.where(crossed, np.maximum(np.ceil(np.where(crossed, left, 0.0)), 0), 0).astype(np.int64)
    u1 = np.where(crossed, np.minimum(np.floor(np.where(crossed, right, -1.0)), width - 1), -1).astype(np.int64)
    return t, v, u0, np.maximum(u1 - u0 + 1, 0)


def _palm_faces(joints: np.ndarray, radius: float) -> np.ndarray:
    """[N,3,3,3]: the palm triangles moved by `radius` along their normals toward the camera. The
    thick palm (triangles ⊕ ball) is that near face, the far face, the sides and the rims; a ray
    from the camera meets the near face first, and the sides and rims lie inside the palm-edge
    capsules and joint spheres, so the near face and the capsules draw it exactly."""
    tri = joints[:, _PALM_FAN]
    n = np.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0])
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    n = n / np.maximum(norm, 1e-300) * (norm > 1e-12)      # degenerate: drawn flat, a zero-area triangle
    toward = -np.sign(np.einsum("nkj,nkj->nk", n, tri[:, :, 0]))[..., None]
    return tri + (radius * toward * n)[:, :, None, :]


def render_skeleton_depth(joints_cam: np.ndarray, K: np.ndarray, size: tuple[int, int], radius: float = 0.009,
                          background: float | None = 2.5) -> tuple[np.ndarray, np.ndarray]:
    """True depth of "thick skeleton" hands: each bone (OpenPose order) a capsule of `radius`, and
    the palm (wrist, 5, 9, 13, 17) a slab of the same thickness, z-buffered. The depth is the exact
    entry of each pixel centre's ray into the surface (ray/capsule, ray/plane), as z.

    joints_cam: [N,21,3] m, camera optical frame (x right, y down, z forward); size: (width, height);
    background: a fronto-parallel wall at this depth, None: no measurement (NaN).
    Returns (depth float32 [H,W] m, labels int16 [H,W]: -1 background, i hand index)."""
    joints = np.asarray(joints_cam, dtype=np.float64).reshape(-1, 21, 3)
    K = np.asarray(K, dtype=np.float64)
    depth, labels = _new_buffers(size, background)
    pairs = np.concatenate([_HAND_BONES, _PALM_EDGES])
    a = joints[:, pairs[:, 0]].reshape(-1, 3)
    b = joints[:, pairs[:, 1]].reshape(-1, 3)
    label = np.repeat(np.arange(len(joints)), len(pairs)).astype(np.int16)
    _draw_capsules(depth, labels, a, b, label, radius, K)
    palm = _palm_faces(joints, radius)
    hand = np.repeat(np.arange(len(joints)), palm.shape[1]).astype(np.int16)
    _draw_triangles(depth, labels, palm.reshape(-1, 3, 3), hand, K)
    return _finish(depth), labels


def render_mesh_depth(vertices: np.ndarray | list[np.ndarray], faces: np.ndarray | list[np.ndarray], K: np.ndarray,
                      size: tuple[int, int], background: float | None = 2.5) -> tuple[np.ndarray, np.ndarray]:
    """True depth of triangle meshes (e.g. MANO, 778 vertices / 1538 faces per hand), z-buffered,
    both sides of every face drawn, exact plane depth per pixel centre.

    vertices: [N,V,3] m in the camera optical frame (or a list of [V_i,3]); faces: [F,3] shared by
    all hands, or one array per hand; size: (width, height); background as render_skeleton_depth.
    Returns (depth float32 [H,W] m, labels int16 [H,W]: -1 background, i hand index)."""
    verts = [np.asarray(v, dtype=np.float64).reshape(-1, 3) for v in vertices]
    per_hand = faces if isinstance(faces, (list, tuple)) else [faces] * len(verts)
    if len(per_hand) != len(verts):
        raise ValueError(f"{len(verts)} meshes but {len(per_hand)} face arrays")
    tri = [v[np.asarray(f, dtype=np.int64)] for v, f in zip(verts, per_hand)]
    label = np.concatenate([np.full(len(t), i, np.int16) for i, t in enumerate(tri)]) if tri else np.zeros(0, np.int16)
    depth, labels = _new_buffers(size, background)
    if tri:
        _draw_triangles(depth, labels, np.concatenate(tri), label, np.asarray(K, dtype=np.float64))
    return _finish(depth), labels


def tube_mesh(joints: np.ndarray, radius: float = 0.009, sides: int = 12,
              rings: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A MANO-sized mesh (~1440 faces) inside a thick skeleton (render_skeleton_depth of the same
    radius): per bone, an open tube whose vertices lie on the capsule's cylinder, so every triangle
    lies inside the capsule. Returns (vertices [V,3], faces [F,3])."""
    verts, faces = [], []
    angle = 2 * np.pi * np.arange(sides) / sides
    for a, b in _HAND_BONES:
        axis = joints[b] - joints[a]
        w = axis / np.linalg.norm(axis)
        u1 = np.cross(w, [1.0, 0.0, 0.0] if abs(w[0]) < 0.9 else [0.0, 1.0, 0.0])
        u1 /= np.linalg.norm(u1)
        u2 = np.cross(w, u1)
        ring = radius * (np.cos(angle)[:, None] * u1 + np.sin(angle)[:, None] * u2)
        base = sum(len(v) for v in verts)
        verts.append((joints[a] + np.linspace(0, 1, rings)[:, None, None] * axis + ring).reshape(-1, 3))
        for k in range(rings - 1):
            for j in range(sides):
                p, q = base + k * sides + j, base + k * sides + (j + 1) % sides
                faces += [(p, q, p + sides), (q, q + sides, p + sides)]
    return np.concatenate(verts), np.array(faces)


# An adult hand's surface, for depth truth that owes nothing to the estimator's hand model:
# finger radii at each joint (m; half the finger's width: thumb widest, tapering to the tips,
# anthropometric averages), and a palm plate 26 mm thick whose outline runs from the wrist's
# two sides over the knuckles. `hand_surface_mesh` builds it around any 21-joint skeleton.
_JOINT_RADIUS = np.array([
    0.0130,                                  # wrist (the palm's heel; the thumb's base sits on it)
    0.0125, 0.0110, 0.0100, 0.0088,          # thumb: CMC, MCP, IP, tip
    0.0095, 0.0085, 0.0077, 0.0068,          # index: MCP, PIP, DIP, tip
    0.0100, 0.0088, 0.0080, 0.0070,          # middle
    0.0095, 0.0084, 0.0076, 0.0066,          # ring
    0.0085, 0.0075, 0.0068, 0.0060,          # little
])
_FINGER_SEGMENTS = np.array([(1, 2), (2, 3), (3, 4), (5, 6), (6, 7), (7, 8), (9, 10), (10, 11), (11, 12),
                             (13, 14), (14, 15), (15, 16), (17, 18), (18, 19), (19, 20), (0, 1)])
_PALM_THICKNESS = 0.026                      # m, back of the hand to the palm's skin at its middle
_WRIST_HALF_WIDTH = 0.028                    # m, from the wrist joint to either side of the wrist


def _frame(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    u1 = np.cross(w, [1.0, 0.0, 0.0] if abs(w[0]) < 0.9 else [0.0, 1.0, 0.0])
    u1 /= np.linalg.norm(u1)
    return u1, np.cross(w, u1)


def _sphere(centre: np.ndarray, radius: float, base: int, lat: int = 5, lon: int = 8) -> tuple[np.ndarray, list]:
    """A UV sphere (poles included) as vertices and faces numbered from `base`."""
    theta = np.linspace(0, np.pi, lat + 1)[1:-1]
    phi = 2 * np.pi * np.arange(lon) / lon
    ring = np.stack([np.sin(theta)[:, None] * np.cos(phi), np.sin(theta)[:, None] * np.sin(phi),
                     np.cos(theta)[:, None] * np.ones_like(phi)], -1).reshape(-1, 3)
    verts = centre + radius * np.concatenate([[[0, 0, 1.0]], ring, [[0, 0, -1.0]]])
    top, bottom = base, base + 1 + len(ring)
    faces = []
    for j in range(lon):
        k = (j + 1) % lon
        faces.append((top, base + 1 + j, base + 1 + k))
        last = base + 1 + (lat - 2) * lon
        faces.append((last + j, bottom, last + k))
        for r in range(lat - 2):
            p, q = base + 1 + r * lon + j, base + 1 + r * lon + k
            faces += [(p, p + lon, q), (q, p + lon, q + lon)]
    return verts, faces


def hand_surface_mesh(joints: np.ndarray, sides: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """A closed-looking hand surface around a skeleton [21,3] (OpenPose order, metres): tapered
    tubes along the finger bones with a ball at every joint (the radii above), and a palm plate
    of _PALM_THICKNESS between the wrist's sides and the knuckles. Render it with
    render_mesh_depth. Returns (vertices [V,3], faces [F,3])."""
    j = np.asarray(joints, np.float64)
    verts: list[np.ndarray] = []
    faces: list[tuple[int, int, int]] = []

    def add(v: np.ndarray, f: list) -> None:
        verts.append(v)
        faces.extend(f)

    n_verts = lambda: sum(len(v) for v in verts)     # noqa: E731
    angle = 2 * np.pi * np.arange(sides) / sides
    for a, b in _FINGER_SEGMENTS:
        axis = j[b] - j[a]
        u1, u2 = _frame(axis / max(np.linalg.norm(axis), 1e-9))
        base = n_verts()
        rings = [j[p] + _JOINT_RADIUS[p] * (np.cos(angle)[:, None] * u1 + np.sin(angle)[:, None] * u2)
                 for p in (a, b)]
        add(np.concatenate(rings), [f for i in range(sides) for f in
                                    ((base + i, base + (i + 1) % sides, base + sides + i),
                                     (base + (i + 1) % sides, base + sides + (i + 1) % sides, base + sides + i))])
    for p in range(1, 21):
        v, f = _sphere(j[p], _JOINT_RADIUS[p], n_verts())
        add(v, f)
    # the palm plate: its outline in the palm's plane, offset to both skins
    across = j[5] - j[17]
    normal = np.cross(j[5] - j[0], j[17] - j[0])
    normal /= max(np.linalg.norm(normal), 1e-9)
    across -= normal * (across @ normal)
    across /= max(np.linalg.norm(across), 1e-9)
    outline = np.stack([j[0] + _WRIST_HALF_WIDTH * across, j[5] + _JOINT_RADIUS[5] * across, j[9], j[13],
                        j[17] - _JOINT_RADIUS[17] * across, j[0] - _WRIST_HALF_WIDTH * across])
    m = len(outline)
    half = _PALM_THICKNESS / 2
    centre = outline.mean(0)
    base = n_verts()
    plate = np.concatenate([outline + half * normal, outline - half * normal,
                            [centre + half * normal, centre - half * normal]])
    cf, cb = base + 2 * m, base + 2 * m + 1
    plate_faces = []
    for i in range(m):
        k = (i + 1) % m
        plate_faces += [(cf, base + i, base + k), (cb, base + m + k, base + m + i),
                        (base + i, base + m + i, base + k), (base + k, base + m + i, base + m + k)]
    add(plate, plate_faces)
    return np.concatenate(verts), np.array(faces, dtype=np.int64)


def add_occluder(depth_true: np.ndarray, labels: np.ndarray, box_px: np.ndarray | tuple[float, float, float, float],
                 z: float, disc: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A flat, fronto-parallel object at depth `z` (e.g. held in the hand) over the pixel centres
    inside box (x0, y0, x1, y1) — or the ellipse inscribed in it with `disc` — wherever it is nearer
    than the scene. Returns new (depth, labels), the object labelled -2."""
    x0, y0, x1, y1 = (float(c) for c in box_px)
    h, w = depth_true.shape
    depth, out_labels = depth_true.astype(np.float32, copy=True), labels.astype(np.int16, copy=True)
    cols = slice(max(int(np.ceil(x0)), 0), max(min(int(np.floor(x1)) + 1, w), 0))
    rows = slice(max(int(np.ceil(y0)), 0), max(min(int(np.floor(y1)) + 1, h), 0))
    v, u = np.mgrid[rows, cols]
    cover = np.ones(u.shape, bool)
    if disc:
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, max((x1 - x0) / 2, 1e-9), max((y1 - y0) / 2, 1e-9)
        cover = ((u - cx) / rx) ** 2 + ((v - cy) / ry) ** 2 <= 1.0
    window, window_labels = depth[rows, cols], out_labels[rows, cols]
    cover &= ~(window <= z)                  # NaN (no measurement) counts as far
    window[cover] = z
    window_labels[cover] = -2
    return depth, out_labels


@dataclass(frozen=True)
class SensorModel:
    """A RealSense-D435-like active stereo camera, its depth aligned (imperfectly) to colour.

    Noise: σ(z) = sigma_at_1m·z², from stereo: σ_z = z²·σ_disparity/(f·b); for a D435 at 848x480
    (f ≈ 447 px, baseline 50 mm, 0.08 px subpixel) σ_z ≈ 3.6 mm·z²: 0.3 mm at 0.3 m, 0.9 mm at
    0.5 m, 3.6 mm at 1 m, 8.1 mm at 1.5 m; then quantised to the 16UC1 stream's 1 mm."""

    sigma_at_1m: float = 0.0036          # m at 1 m, σ grows with z²
    noise_correlation: float = 0.5       # share of the noise variance that is smooth over ~2 px (matching windows)
    quantum: float = 0.001               # m, the depth unit of a 16UC1 stream; 0: none
    edge_step: float = 0.03              # m, a larger jump between neighbouring pixels is a depth edge
    edge_width: int = 1                  # px, matching fails within this distance of an edge ...
    p_edge_hole: float = 0.35            # ... with this probability
    p_flying: float = 0.25               # an edge pixel on a silhouette mixes foreground and background
    dark_luma: float = 25.0              # 0-255: darker colour (IR-absorbing, textureless) surfaces ...
    p_dark_hole: float = 0.6             # ... lose their depth with this probability
    hole_ratio: float = 0.0              # extra holes: random blobs over this share of the image
    hole_blob_px: float = 24.0           # typical size of those blobs
    min_range: float = 0.1               # m, a D435's minimum depth at its lowest resolution
    max_range: float = 6.0               # m
    misregistration: tuple[int, int] = (2, 1)   # px (dx, dy): what truth has at (x, y) lands at (x+dx, y+dy)


def _unit_noise(shape: tuple[int, int], rng: np.random.Generator, correlation: float) -> np.ndarray:
    """Unit-variance Gaussian noise, `correlation` of its variance smooth over about 2 px."""
    import cv2

    h, w = shape
    white = rng.standard_normal(shape, dtype=np.float32)
    if correlation <= 0:
        return white
    gh, gw = h // 2 + 3, w // 2 + 3
    coarse = rng.standard_normal((gh, gw), dtype=np.float32)
    # A 2x bilinear upsampling weighs each pixel's four coarse samples by 0.75/0.25 per axis:
    # the variance falls to 0.625², the same at every pixel (the margin keeps the border alike).
    smooth = cv2.resize(coarse, (2 * gw, 2 * gh), interpolation=cv2.INTER_LINEAR)[2:2 + h, 2:2 + w] / 0.625
    return cv2.addWeighted(white, np.sqrt(1.0 - correlation), smooth, np.sqrt(correlation), 0.0)


def _blob_mask(shape: tuple[int, int], rng: np.random.Generator, ratio: float, blob_px: float) -> np.ndarray:
    """Smooth random blobs covering about `ratio` of the image (a level set of smoothed noise)."""
    import cv2

    h, w = shape
    if ratio <= 0:
        return np.zeros(shape, bool)
    if ratio >= 1:
        return np.ones(shape, bool)
    s = max(int(round(blob_px)), 1)
    gh, gw = -(-h // s) + 3, -(-w // s) + 3
    field = cv2.resize(rng.standard_normal((gh, gw), dtype=np.float32), (gw * s, gh * s),
                       interpolation=cv2.INTER_CUBIC)[s:s + h, s:s + w]
    # the level from a subsample: the share is then right to ~1 % at a fraction of the cost
    return field < np.quantile(field[::3, ::3], ratio)


def _edges(depth: np.ndarray, step: float, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pixels within `width` px of a depth jump > step, nearest and farthest measured depth there)."""
    import cv2

    kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    far_fill = np.fmin(depth, np.float32(1e6))          # no return counts as far ...
    near = cv2.erode(far_fill, kernel)
    jump = cv2.dilate(far_fill, kernel) - near
    far = cv2.dilate(np.fmax(depth, np.float32(0.0)), kernel)   # ... but has no depth to mix in
    return jump > step, near, far


def _silhouettes(labels: np.ndarray, width: int) -> np.ndarray:
    """Pixels within `width` px of a change of object."""
    import cv2

    kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    return cv2.dilate(labels, kernel) != cv2.erode(labels, kernel)


def _dark(image_rgb: np.ndarray, threshold: float) -> np.ndarray:
    img = np.asarray(image_rgb, dtype=np.float32)
    luma = img if img.ndim == 2 else img[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    return luma < threshold


def _shifted(depth: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """out[y+dy, x+dx] = depth[y, x]; pixels nothing lands on have no measurement."""
    h, w = depth.shape
    out = np.full_like(depth, np.nan)
    if abs(dx) < w and abs(dy) < h:
        out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            depth[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def _edge_faults(d: np.ndarray, rng: np.random.Generator, model: SensorModel,
                 labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of (flying pixels, edge holes) and the flying pixels' depths written into d.
    One draw per edge pixel decides: below p_flying it flies (where it can), in the next
    p_edge_hole it is a hole, so no pixel is both. A flying pixel mixes the nearest and farthest
    surface around it, as a stereo window straddling a silhouette does."""
    band, near, far = _edges(d, model.edge_step, model.edge_width)
    edge = np.flatnonzero(band)
    u = rng.random(edge.size)
    can_fly = far.flat[edge] - near.flat[edge] > model.edge_step
    if labels is not None:
        can_fly &= _silhouettes(np.asarray(labels, dtype=np.int16), model.edge_width).flat[edge]
    flying = edge[(u < model.p_flying) & can_fly]
    mix = rng.uniform(0.15, 0.85, flying.size).astype(np.float32)
    d.flat[flying] = near.flat[flying] + mix * (far.flat[flying] - near.flat[flying])
    return flying, edge[(u >= model.p_flying) & (u < model.p_flying + model.p_edge_hole)]


def _add_noise(d: np.ndarray, rng: np.random.Generator, model: SensorModel) -> np.ndarray:
    """Noise of σ = sigma_at_1m·z², then the stream's quantisation."""
    if model.sigma_at_1m > 0:
        noise = _unit_noise(d.shape, rng, model.noise_correlation)
        noise *= np.float32(model.sigma_at_1m)
        noise *= d
        noise *= d
        d = d + noise
    if model.quantum > 0:
        d = np.round(d / np.float32(model.quantum)) * np.float32(model.quantum)
    return d


def simulate_sensor(depth_true: np.ndarray, rng: np.random.Generator, model: SensorModel = SensorModel(),
                    labels: np.ndarray | None = None, image_rgb: np.ndarray | None = None) -> np.ndarray:
    """What a stereo depth camera (see SensorModel) reports for a true depth map (float32 m, NaN:
    no measurement): flying pixels at silhouettes (where `labels` change, or at every depth edge
    without labels), noise growing with z², 1 mm quantisation, holes at depth edges, in dark
    regions of `image_rgb` (RGB or grey, aligned with depth_true), in random blobs and out of
    range; the whole map then shifted by the misregistration. Returns float32 [H,W] m, NaN: a hole."""
    d = np.asarray(depth_true, dtype=np.float32).copy()
    _, edge_holes = _edge_faults(d, rng, model, labels)
    d = _add_noise(d, rng, model)
    d.flat[edge_holes] = np.nan
    if image_rgb is not None:
        d[_dark(image_rgb, model.dark_luma) & (rng.random(d.shape, dtype=np.float32) < model.p_dark_hole)] = np.nan
    d[_blob_mask(d.shape, rng, model.hole_ratio, model.hole_blob_px)] = np.nan
    with np.errstate(invalid="ignore"):
        d[(d < model.min_range) | (d > model.max_range)] = np.nan
    return _shifted(d, *model.misregistration)


def with_nan_joint(make_hands: Callable[..., list], joint: int) -> Callable[..., list]:
    """A stand-in for a pipeline stage that makes hands (e.g. HandPipeline._joint_hands): the same
    hands, the first one with a NaN at `joint` (a placement gone wrong)."""
    def poisoned(*args: Any, **kwargs: Any) -> list:
        hands = make_hands(*args, **kwargs)
        hands[0].joints = hands[0].joints.copy()
        hands[0].joints[joint] = np.nan
        return hands
    return poisoned
