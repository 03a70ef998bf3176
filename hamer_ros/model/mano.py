"""MANO right-hand model from the checkpoint's own copy or the user's `MANO_RIGHT.pkl`, no chumpy.

The official hamer.ckpt stores MANO as smplx's buffers (`mano.*`); `ManoLayer.from_buffers` builds
the layer from them. The official pickle holds chumpy objects (shapedirs) and a scipy sparse
J_regressor; chumpy is unmaintained and breaks on current NumPy, so the file is read with a
restricted unpickler that extracts plain arrays. Skinning is smplx's `lbs` with rotation
matrices, exactly as the reference `MANOLayer` calls it (no PCA, no hands_mean).
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import scipy.sparse
import torch
from smplx.lbs import lbs
from smplx.vertex_ids import vertex_ids
from torch import nn

from ..weights import WEIGHTS_HINT
from .safe_pickle import Foreign, RestrictedUnpickler, UnsafePickleError

# Every MANO file error ends with this: the file is optional since the checkpoint holds MANO.
HOW_TO_GET = f"Give no MANO file to use the checkpoint's own copy. {WEIGHTS_HINT}"

NUM_VERTICES = 778
NUM_FACES = 1538
# MANO kinematic tree: 0 wrist, 1-3 index, 4-6 middle, 7-9 pinky, 10-12 ring, 13-15 thumb.
PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
FINGERTIP_VERTICES = tuple(vertex_ids["mano"][f] for f in ("thumb", "index", "middle", "ring", "pinky"))
# 16 kinematic joints + 5 fingertips (indices 16..20) → OpenPose hand order.
OPENPOSE_ORDER = (0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20)
REQUIRED_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
# The checkpoint's MANO buffers (smplx's names) and the shapes HaMeR needs.
BUFFER_SHAPES = {"v_template": (NUM_VERTICES, 3), "shapedirs": (NUM_VERTICES, 3, 10),
                 "posedirs": (135, NUM_VERTICES * 3), "J_regressor": (16, NUM_VERTICES),
                 "lbs_weights": (NUM_VERTICES, 16), "parents": (16,), "faces_tensor": (NUM_FACES, 3)}


class ManoModelError(RuntimeError):
    pass


def resolve_mano_path(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "MANO_RIGHT.pkl"
    if not p.is_file():
        raise ManoModelError(f"MANO model not found: looked for {p}. {HOW_TO_GET}")
    if "left" in p.name.lower():
        raise ManoModelError(
            f"{p} is the LEFT-hand MANO model; HaMeR needs MANO_RIGHT.pkl (left hands are handled "
            f"by mirroring). Pass the MANO_RIGHT.pkl from the same folder. {HOW_TO_GET}")
    return p


def _to_array(value: object) -> np.ndarray:
    """Plain array from whatever the pickle held: ndarray, chumpy Ch/Select stand-in, csc stand-in."""
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, Foreign):
        state = value.state if isinstance(value.state, dict) else {}
        if value.name.endswith("_matrix") and "indptr" in state:  # scipy sparse, any format
            shape = state.get("_shape") or state.get("shape")
            cls = getattr(scipy.sparse, value.name)
            return np.asarray(cls((state["data"], state["indices"], state["indptr"]), shape=shape).todense())
        if "x" in state:                      # chumpy.ch.Ch: value lives in .x
            return np.asarray(state["x"])
        if "a" in state and "idxs" in state:  # chumpy.reordering.Select: a.x.ravel()[idxs]
            base = _to_array(state["a"]).ravel()[np.asarray(state["idxs"])]
            shape = state.get("preferred_shape")
            return base.reshape(shape) if shape is not None else base
    raise ManoModelError(f"unexpected object {value!r} in the MANO file")


def load_mano_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Read MANO_RIGHT.pkl into plain float/int arrays (no chumpy, no code execution)."""
    p = resolve_mano_path(path)
    try:
        data = RestrictedUnpickler(io.BytesIO(p.read_bytes()), encoding="latin1").load()
    except UnsafePickleError as e:
        raise ManoModelError(f"{p}: {e}. This is not the official MANO file. {HOW_TO_GET}") from e
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise ManoModelError(
            f"{p} is not a readable MANO pickle ({type(e).__name__}: {e}); the file is corrupt or "
            f"truncated. Download it again. {HOW_TO_GET}") from e
    if not isinstance(data, dict):
        raise ManoModelError(f"{p} does not hold a MANO model (got {type(data).__name__}). {HOW_TO_GET}")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ManoModelError(f"{p} is not a MANO model: missing {missing}. {HOW_TO_GET}")
    arrays = {k: _to_array(data[k]) for k in REQUIRED_KEYS}
    n = arrays["v_template"].shape[0]
    if n != NUM_VERTICES or "hands_components" not in data:
        kind = {6890: "an SMPL/SMPL+H body model", 10475: "an SMPL-X body model"}.get(n, f"a {n}-vertex model")
        raise ManoModelError(f"{p} is {kind}, not the MANO hand model (778 vertices). {HOW_TO_GET}")
    arrays["shapedirs"] = arrays["shapedirs"][:, :, :10]
    return arrays


class ManoLayer(nn.Module):
    """Right-hand MANO: rotation matrices + betas → vertices [B,778,3], joints [B,21,3] (OpenPose)."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        super().__init__()
        f32 = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=torch.float32)  # noqa: E731
        posedirs = np.asarray(arrays["posedirs"])
        self.register_buffer("v_template", f32(arrays["v_template"]))
        self.register_buffer("shapedirs", f32(arrays["shapedirs"]))
        self.register_buffer("posedirs", f32(posedirs.reshape(-1, posedirs.shape[-1]).T))  # 135 × 2334
        self.register_buffer("J_regressor", f32(arrays["J_regressor"]))
        self.register_buffer("lbs_weights", f32(arrays["weights"]))
        parents = np.asarray(arrays["kintree_table"])[0].astype(np.int64)
        parents[0] = -1   # stored as uint32 max in the official file
        self.register_buffer("parents", torch.as_tensor(parents))
        self.register_buffer("faces", torch.as_tensor(np.asarray(arrays["f"], dtype=np.int64)))
        self.register_buffer("tip_ids", torch.tensor(FINGERTIP_VERTICES))
        self.register_buffer("joint_order", torch.tensor(OPENPOSE_ORDER))

    @classmethod
    def from_file(cls, path: str | Path) -> "ManoLayer":
        return cls(load_mano_arrays(path))

    @classmethod
    def from_buffers(cls, buffers: dict[str, torch.Tensor], source: str = "the checkpoint") -> "ManoLayer":
        """From smplx's MANO buffers (names without the `mano.` prefix), as the official checkpoint
        stores them: the same numbers `from_file` makes of MANO_RIGHT.pkl, posedirs already
        flattened to 135 × 2334 and the root's parent already -1."""
        problems = [f"{k} missing" if k not in buffers else f"{k} is {tuple(buffers[k].shape)}, not {shape}"
                    for k, shape in BUFFER_SHAPES.items()
                    if k not in buffers or tuple(buffers[k].shape) != shape]
        if problems:
            raise ManoModelError(f"{source} holds no usable copy of MANO ({'; '.join(problems)}): pass "
                                 f"MANO_RIGHT.pkl (mano) instead. {WEIGHTS_HINT}")
        arr = {k: buffers[k].detach().cpu().numpy() for k in BUFFER_SHAPES}
        parents = arr["parents"].astype(np.int64)
        return cls({"v_template": arr["v_template"], "shapedirs": arr["shapedirs"],
                    "posedirs": arr["posedirs"].T.reshape(NUM_VERTICES, 3, -1),   # undo the flattening
                    "J_regressor": arr["J_regressor"], "weights": arr["lbs_weights"],
                    "kintree_table": np.stack([parents, np.arange(len(parents))]), "f": arr["faces_tensor"]})

    def forward(self, global_orient: torch.Tensor, hand_pose: torch.Tensor, betas: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """global_orient [B,3,3], hand_pose [B,15,3,3], betas [B,10] → vertices, joints (metres)."""
        pose = torch.cat((global_orient[:, None], hand_pose), dim=1)
        vertices, joints = lbs(betas, pose, self.v_template, self.shapedirs, self.posedirs,
                               self.J_regressor, self.parents, self.lbs_weights, pose2rot=False)
        joints = torch.cat((joints, vertices[:, self.tip_ids]), dim=1)[:, self.joint_order]
        return vertices, joints
