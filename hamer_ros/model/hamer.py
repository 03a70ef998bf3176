"""The HaMeR network: crops → MANO hands (right-hand frame, metres)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from .checkpoint import CheckpointError, load_checkpoint_file, model_config_path, split_state_dict
from .config import HaMeRConfig
from .head import ManoHead
from .mano import BUFFER_SHAPES, ManoLayer
from .rotation import rot6d_to_rotmat
from .vit import ViT

log = logging.getLogger(__name__)


class HaMeROutput(NamedTuple):
    """A NamedTuple so torch.export / ONNX see a plain pytree."""

    vertices: torch.Tensor       # [B,778,3] m, MANO frame (right hand; left crops are mirrored)
    joints: torch.Tensor         # [B,21,3] m, OpenPose hand order
    keypoints_2d: torch.Tensor   # [B,21,2] normalised crop units: crop px = (k + 0.5)·256
    cam: torch.Tensor            # [B,3] weak-perspective (s, tx, ty) in the crop
    global_orient: torch.Tensor  # [B,3,3]
    hand_pose: torch.Tensor      # [B,15,3,3]
    betas: torch.Tensor          # [B,10]
    cam_t: torch.Tensor          # [B,3] translation in the crop camera (focal 5000 px / 256 px crop)


class HaMeR(nn.Module):
    def __init__(self, cfg: HaMeRConfig, mano: ManoLayer):
        super().__init__()
        self.cfg = cfg
        self.backbone = ViT(cfg)
        self.head = ManoHead(cfg)
        self.mano = mano

    @property
    def network(self) -> list[nn.Module]:
        """The learned parts (what a checkpoint holds)."""
        return [self.backbone, self.head]

    def network_state_dict(self) -> dict[str, torch.Tensor]:
        return {f"{name}.{k}": v for name in ("backbone", "head")
                for k, v in getattr(self, name).state_dict().items()}

    def decode(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The network alone: crops → (6D pose [B,16,6], betas [B,10], cam [B,3])."""
        return self.head(self.backbone(crops))

    def forward(self, crops: torch.Tensor) -> HaMeROutput:
        pose6d, betas, cam = self.decode(crops)
        return self.hands_from_params(pose6d, betas, cam)

    def hands_from_params(self, pose6d: torch.Tensor, betas: torch.Tensor, cam: torch.Tensor) -> HaMeROutput:
        if pose6d.shape[0] == 0:   # smplx's lbs cannot reshape an empty batch
            z = pose6d.new_zeros
            return HaMeROutput(z(0, 778, 3), z(0, 21, 3), z(0, 21, 2), cam.float(), z(0, 3, 3),
                               z(0, 15, 3, 3), betas.float(), z(0, 3))
        # Geometry in fp32 even under autocast: Gram-Schmidt and skinning lose millimetres in fp16.
        with torch.autocast(device_type=pose6d.device.type, enabled=False):
            pose6d, betas, cam = pose6d.float(), betas.float(), cam.float()
            rotmats = rot6d_to_rotmat(pose6d)
            global_orient, hand_pose = rotmats[:, 0], rotmats[:, 1:]
            vertices, joints = self.mano(global_orient, hand_pose, betas)
            f = self.cfg.focal_length
            size = self.cfg.image_size
            cam_t = torch.stack((cam[:, 1], cam[:, 2], 2 * f / (size * cam[:, 0] + 1e-9)), dim=-1)
            p = joints + cam_t[:, None]
            keypoints_2d = (f / size) * p[..., :2] / p[..., 2:]
        return HaMeROutput(vertices, joints, keypoints_2d, cam, global_orient, hand_pose, betas, cam_t)

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, mano: str | Path | None = None,
                        device: str | torch.device = "cpu",
                        config: HaMeRConfig | str | Path | None = None) -> "HaMeR":
        """Load the official Lightning checkpoint; MANO from `mano` (MANO_RIGHT.pkl or its folder)
        when given, else (None or "") from the checkpoint's own copy of MANO.

        The config is read from `<checkpoint dir>/../model_config.yaml` unless `config` is given
        (a HaMeRConfig or a YAML path). Backbone and head load strictly; the discriminator is
        ignored; with a MANO file, the checkpoint's copy is only compared against it. The network
        is built on the meta device and takes the checkpoint's tensors as they are: no random
        initialisation of weights that would be overwritten at once.
        """
        raw = load_checkpoint_file(checkpoint)   # memory-mapped: cheap
        mano_layer = ManoLayer.from_file(mano) if mano else None
        if config is None:
            cfg_path = model_config_path(checkpoint)
            if not cfg_path.is_file():
                raise CheckpointError(
                    f"model config not found: looked for {cfg_path} (the official layout keeps "
                    f"model_config.yaml one folder above checkpoints/hamer.ckpt); pass config= to override.")
            config = HaMeRConfig.from_yaml(cfg_path)
        elif not isinstance(config, HaMeRConfig):
            config = HaMeRConfig.from_yaml(config)
        sd = raw.get("state_dict", raw)
        weights, ckpt_mano = split_state_dict(sd)
        if mano_layer is None:
            mano_layer = ManoLayer.from_buffers(ckpt_mano, source=str(checkpoint))
        else:
            _compare_mano(ckpt_mano, mano_layer)
        with torch.device("meta"):
            model = cls(config, mano_layer)   # mano_layer is already real: only the network is meta
        model.load_network_state_dict(weights, source=str(checkpoint))
        return model.to(device).eval()

    def load_network_state_dict(self, weights: dict[str, torch.Tensor], source: str = "state dict") -> None:
        """Strict load of backbone + head, naming every missing or unexpected key and bad shape.
        The tensors are taken as they are (assign), so the network may be built on the meta device."""
        own = self.network_state_dict()
        missing = sorted(set(own) - set(weights))
        unexpected = sorted(set(weights) - set(own))
        bad_shape = sorted(f"{k}: file {tuple(weights[k].shape)} vs model {tuple(own[k].shape)}"
                           for k in set(own) & set(weights) if weights[k].shape != own[k].shape)
        if missing or unexpected or bad_shape:
            def show(keys: list[str]) -> str:
                return ", ".join(keys[:12]) + (f" … (+{len(keys) - 12})" if len(keys) > 12 else "")
            raise CheckpointError(
                f"{source} does not match the HaMeR network ({self.cfg.depth}-block ViT, "
                f"{self.cfg.embed_dim} wide): missing keys [{show(missing)}]; unexpected keys "
                f"[{show(unexpected)}]; wrong shapes [{show(bad_shape)}]")
        for name in ("backbone", "head"):
            prefix = name + "."
            getattr(self, name).load_state_dict(
                {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}, strict=True, assign=True)


def _compare_mano(ckpt_mano: dict[str, torch.Tensor], mano: ManoLayer) -> None:
    """The reference lets the checkpoint's MANO copy overwrite the user's file; we use the user's
    file and only warn when the two disagree (e.g. a different MANO release was given)."""
    for key in BUFFER_SHAPES:
        ours = "faces" if key == "faces_tensor" else key
        if key not in ckpt_mano:
            continue
        a, b = ckpt_mano[key], getattr(mano, ours)
        if a.shape != b.shape or not torch.allclose(a.to(b.dtype), b, atol=1e-6, rtol=0):
            diff = "shape differs" if a.shape != b.shape else f"max |Δ| = {(a.to(b.dtype) - b).abs().max():.3g}"
            log.warning("The checkpoint's copy of MANO %s differs from the MANO file (%s); using the "
                        "MANO file. Outputs can differ from the reference code, which uses the copy.",
                        ours, diff)
