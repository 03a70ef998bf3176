"""Network configuration. The default is the official HaMeR model (ViT-H/16 + 6-layer decoder)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import yaml

IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class HaMeRConfig:
    # Input: a square crop of which the ViT sees only the central `crop_width` columns.
    image_size: int = 256
    crop_width: int = 192
    # Backbone (ViTPose's ViT-H).
    patch_size: int = 16
    patch_padding: int = 2          # a ViTPose quirk: 16x12 tokens, last 2 rows/cols never seen
    embed_dim: int = 1280
    depth: int = 32
    num_heads: int = 16
    mlp_ratio: float = 4.0
    # MANO head (transformer decoder with one query token).
    head_dim: int = 1024
    head_depth: int = 6
    head_heads: int = 8
    head_dim_head: int = 64
    head_mlp_dim: int = 1024
    # MANO / camera.
    num_joints: int = 16            # root + 15 hand joints, 6D each
    num_betas: int = 10
    focal_length: float = 5000.0    # px, for an `image_size` crop
    image_mean: tuple[float, float, float] = IMAGE_MEAN
    image_std: tuple[float, float, float] = IMAGE_STD

    @property
    def grid(self) -> tuple[int, int]:
        """Token grid (rows, cols) after the padded patch embedding."""
        def n(size: int) -> int:
            return (size + 2 * self.patch_padding - self.patch_size) // self.patch_size + 1
        return n(self.image_size), n(self.crop_width)

    @classmethod
    def tiny(cls) -> "HaMeRConfig":
        """A few-hundred-kB model with the real topology, for tests and pipeline benchmarks."""
        return cls(embed_dim=32, depth=2, num_heads=2, head_dim=32, head_depth=2, head_heads=2,
                   head_dim_head=16, head_mlp_dim=32)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "HaMeRConfig":
        """Read the official `model_config.yaml` (OmegaConf dump of the training config).

        Official files do not state the backbone or decoder width (the reference hard-codes them);
        the optional keys MODEL.BACKBONE.{EMBED_DIM,DEPTH,NUM_HEADS} and
        MODEL.MANO_HEAD.TRANSFORMER_DECODER.dim are ours, used by small test models.
        """
        with open(path, encoding="utf-8") as f:
            try:
                cfg = yaml.safe_load(f) or {}
            except yaml.YAMLError as e:
                raise ValueError(f"{path} is not a readable model config: {e}") from None
        if not isinstance(cfg, dict):
            raise ValueError(f"{path} is not a model config (a YAML mapping), got {type(cfg).__name__}")
        model = cfg.get("MODEL", {})
        backbone = model.get("BACKBONE", {})
        head = model.get("MANO_HEAD", {})
        dec = head.get("TRANSFORMER_DECODER", {})
        unsupported = {
            "MODEL.BACKBONE.TYPE": (backbone.get("TYPE", "vit"), "vit"),
            "MODEL.MANO_HEAD.TYPE": (head.get("TYPE", "transformer_decoder"), "transformer_decoder"),
            "MODEL.MANO_HEAD.JOINT_REP": (head.get("JOINT_REP", "6d"), "6d"),
            "MODEL.MANO_HEAD.TRANSFORMER_INPUT": (head.get("TRANSFORMER_INPUT", "zero"), "zero"),
            "MODEL.MANO_HEAD.IEF_ITERS": (head.get("IEF_ITERS", 1), 1),
        }
        for key, (got, want) in unsupported.items():
            if got != want:
                raise ValueError(f"{path}: {key} = {got!r} is not supported (HaMeR uses {want!r})")
        bbox = model.get("BBOX_SHAPE") or [192, 256]   # absent in the official file: reference sets it
        base = cls()
        return replace(
            base,
            image_size=int(model.get("IMAGE_SIZE", base.image_size)),
            crop_width=int(bbox[0]),
            embed_dim=int(backbone.get("EMBED_DIM", base.embed_dim)),
            depth=int(backbone.get("DEPTH", base.depth)),
            num_heads=int(backbone.get("NUM_HEADS", base.num_heads)),
            head_dim=int(dec.get("dim", base.head_dim)),
            head_depth=int(dec.get("depth", base.head_depth)),
            head_heads=int(dec.get("heads", base.head_heads)),
            head_dim_head=int(dec.get("dim_head", base.head_dim_head)),
            head_mlp_dim=int(dec.get("mlp_dim", base.head_mlp_dim)),
            num_betas=int(cfg.get("MANO", {}).get("NUM_BETAS", base.num_betas)),
            focal_length=float(cfg.get("EXTRA", {}).get("FOCAL_LENGTH", base.focal_length)),
            image_mean=tuple(model.get("IMAGE_MEAN", base.image_mean)),
            image_std=tuple(model.get("IMAGE_STD", base.image_std)),
        )

    def to_yaml_dict(self) -> dict[str, Any]:
        """The official file's layout, plus our size keys (see `from_yaml`)."""
        return {
            "MODEL": {
                "IMAGE_SIZE": self.image_size,
                "IMAGE_MEAN": list(self.image_mean),
                "IMAGE_STD": list(self.image_std),
                "BBOX_SHAPE": [self.crop_width, self.image_size],
                "BACKBONE": {"TYPE": "vit", "EMBED_DIM": self.embed_dim, "DEPTH": self.depth,
                             "NUM_HEADS": self.num_heads},
                "MANO_HEAD": {"TYPE": "transformer_decoder", "TRANSFORMER_DECODER": {
                    "dim": self.head_dim, "depth": self.head_depth, "heads": self.head_heads,
                    "dim_head": self.head_dim_head, "mlp_dim": self.head_mlp_dim,
                    "context_dim": self.embed_dim, "dropout": 0.0, "emb_dropout": 0.0,
                    "norm": "layer"}},
            },
            "MANO": {"NUM_HAND_JOINTS": self.num_joints - 1, "GENDER": "neutral"},
            "EXTRA": {"FOCAL_LENGTH": self.focal_length},
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
