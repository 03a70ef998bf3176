"""Rotation representations used by the head."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def rot6d_to_rotmat(x: torch.Tensor) -> torch.Tensor:
    """6D rotation (Zhou et al. 2019) [..., 6] → rotation matrix [..., 3, 3].

    Gram–Schmidt on the two 3-vectors (first = x[..., 0:3]); they become the matrix's first two
    columns, the third is their cross product.
    """
    a1, a2 = x[..., 0:3], x[..., 3:6]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack((b1, b2, b3), dim=-1)
