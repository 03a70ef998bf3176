"""Synthetic stand-ins for the licensed files, in their official formats, for tests and benchmarks.

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
from pathlib import Path
from typing import Iterator

import numpy as np
import scipy.sparse
import torch
import yaml

from .model.checkpoint import to_reference_key
from .model.config import HaMeRConfig
from .model.mano import FINGERTIP_VERTICES, NUM_FACES, NUM_VERTICES, PARENTS


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
    from .model import HaMeR, ManoLayer
    from .model.mano import load_mano_arrays

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


# Random hands and rotations for the camera tests and scripts/bench_camera.py.
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
