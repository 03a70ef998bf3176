"""Reading the official Lightning checkpoint: restricted unpickling and the reference key names.

The official `hamer.ckpt` pickles its training config (a yacs/omegaconf object), so
`torch.load(weights_only=True)` refuses it, while a plain `torch.load` would run whatever the file
contains. We unpickle with `RestrictedUnpickler`: tensors and containers are rebuilt, foreign
objects become inert stand-ins, and nothing from the file is executed.
"""
from __future__ import annotations

import re
import types
from pathlib import Path

import torch

from ..weights import WEIGHTS_HINT
from .safe_pickle import RestrictedUnpickler, UnsafePickleError


class CheckpointError(RuntimeError):
    pass


class UnsafeCheckpointError(CheckpointError):
    pass


# The only place the reference's state-dict names appear: (reference name, our name), as
# templates: {i} a layer index, {p} weight|bias, {rest} anything. Backbone names already match.
_KEY_RULES = [
    ("mano_head.init_hand_pose", "head.init_pose"),
    ("mano_head.init_betas", "head.init_betas"),
    ("mano_head.init_cam", "head.init_cam"),
    ("mano_head.transformer.pos_embedding", "head.query_pos"),
    ("mano_head.transformer.to_token_embedding.{p}", "head.query_embed.{p}"),
    ("mano_head.transformer.transformer.layers.{i}.0.norm.{p}", "head.layers.{i}.norm1.{p}"),
    ("mano_head.transformer.transformer.layers.{i}.0.fn.to_qkv.weight", "head.layers.{i}.self_attn.qkv.weight"),
    ("mano_head.transformer.transformer.layers.{i}.0.fn.to_out.0.{p}", "head.layers.{i}.self_attn.proj.{p}"),
    ("mano_head.transformer.transformer.layers.{i}.1.norm.{p}", "head.layers.{i}.norm2.{p}"),
    ("mano_head.transformer.transformer.layers.{i}.1.fn.to_q.weight", "head.layers.{i}.cross_attn.q.weight"),
    ("mano_head.transformer.transformer.layers.{i}.1.fn.to_kv.weight", "head.layers.{i}.cross_attn.kv.weight"),
    ("mano_head.transformer.transformer.layers.{i}.1.fn.to_out.0.{p}", "head.layers.{i}.cross_attn.proj.{p}"),
    ("mano_head.transformer.transformer.layers.{i}.2.norm.{p}", "head.layers.{i}.norm3.{p}"),
    ("mano_head.transformer.transformer.layers.{i}.2.fn.net.0.{p}", "head.layers.{i}.mlp.fc1.{p}"),
    ("mano_head.transformer.transformer.layers.{i}.2.fn.net.3.{p}", "head.layers.{i}.mlp.fc2.{p}"),
    ("mano_head.decpose.{p}", "head.dec_pose.{p}"),
    ("mano_head.decshape.{p}", "head.dec_betas.{p}"),
    ("mano_head.deccam.{p}", "head.dec_cam.{p}"),
    ("backbone.{rest}", "backbone.{rest}"),
]
# Not network weights: the training-only discriminator, Lightning's flag, and the checkpoint's
# copy of MANO (`mano.*`), which split_state_dict returns separately: it becomes the MANO layer
# when no MANO file is given, and is only compared against the file otherwise (HaMeR.from_checkpoint).
IGNORED_PREFIXES = ("discriminator.", "initialized", "mano.")
_FIELDS = {"i": r"(?P<i>\d+)", "p": r"(?P<p>weight|bias)", "rest": r"(?P<rest>.+)"}


def _regex(template: str) -> re.Pattern:
    parts = re.split(r"\{(\w+)\}", template)   # literal, field, literal, field, ...
    return re.compile("".join(_FIELDS[s] if k % 2 else re.escape(s) for k, s in enumerate(parts)))


_FORWARD = [(_regex(ref), ours) for ref, ours in _KEY_RULES]
_BACKWARD = [(_regex(ours), ref) for ref, ours in _KEY_RULES]


def _translate(key: str, rules: list) -> str | None:
    for regex, template in rules:
        m = regex.fullmatch(key)
        if m:
            return template.format(**m.groupdict())
    return None


def to_our_key(key: str) -> str | None:
    """Reference key → our key; None for keys that are deliberately ignored."""
    if key.startswith(IGNORED_PREFIXES):
        return None
    new = _translate(key, _FORWARD)
    if new is None:
        raise CheckpointError(f"unknown checkpoint key {key!r}")
    return new


def to_reference_key(key: str) -> str:
    """Our key → the reference's key (used to write checkpoints in the official layout)."""
    ref = _translate(key, _BACKWARD)
    if ref is None:
        raise KeyError(key)
    return ref


def _pickle_module() -> types.ModuleType:
    mod = types.ModuleType("hamer_ros_restricted_pickle")
    mod.Unpickler = RestrictedUnpickler
    mod.load = lambda f, **kw: RestrictedUnpickler(f, **kw).load()
    mod.__dict__["UnpicklingError"] = UnsafePickleError
    return mod


def load_checkpoint_file(path: str | Path) -> dict:
    """The checkpoint's top-level dict, tensors on the CPU (memory-mapped where possible)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(f"HaMeR checkpoint not found: looked for {p}. {WEIGHTS_HINT}")
    mod = _pickle_module()
    try:
        try:
            obj = torch.load(p, map_location="cpu", pickle_module=mod, weights_only=False, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):   # legacy (non-zip) files cannot be memory-mapped
                raise
            obj = torch.load(p, map_location="cpu", pickle_module=mod, weights_only=False)
    except UnsafePickleError as e:
        raise UnsafeCheckpointError(f"{p}: {e}") from e
    except Exception as e:  # torch raises many types for truncated or foreign files
        first = " ".join(str(e).split()).split(". ")[0]   # torch adds whole paragraphs of advice
        raise CheckpointError(
            f"{p} is not a readable PyTorch checkpoint ({type(e).__name__}: {first}): another kind of "
            f"file, or a download that is truncated or corrupt. {WEIGHTS_HINT}") from e
    if not isinstance(obj, dict):
        raise CheckpointError(f"{p} does not contain a state dict (got {type(obj).__name__}). {WEIGHTS_HINT}")
    return obj


def split_state_dict(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Reference state dict → (our network weights, the checkpoint's own MANO buffers without the
    `mano.` prefix)."""
    ours, mano = {}, {}
    for key, value in sd.items():
        if key.startswith("mano."):
            mano[key[len("mano."):]] = value
        new = to_our_key(key)
        if new is not None:
            ours[new] = value
    return ours, mano


def model_config_path(checkpoint: str | Path) -> Path:
    """The reference keeps the config at <ckpt dir>/../model_config.yaml."""
    return Path(checkpoint).expanduser().resolve().parent.parent / "model_config.yaml"
