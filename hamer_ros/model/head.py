"""HaMeR's MANO head: one image-independent query token cross-attending to the ViT tokens."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import HaMeRConfig
from .vit import Mlp   # the same two-layer GELU MLP as the backbone's blocks


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head   # explicit sizes: -1 cannot reshape an empty batch
        self.qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.proj = nn.Linear(heads * dim_head, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        h, d = self.heads, self.dim_head
        q, k, v = self.qkv(x).reshape(b, n, 3, h, d).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, h * d))


class CrossAttention(nn.Module):
    def __init__(self, dim: int, context_dim: int, heads: int, dim_head: int):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        inner = heads * dim_head
        self.q = nn.Linear(dim, inner, bias=False)
        self.kv = nn.Linear(context_dim, 2 * inner, bias=False)  # [k | v]
        self.proj = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        h, d = self.heads, self.dim_head
        q = self.q(x).reshape(b, n, h, d).transpose(1, 2)
        k, v = self.kv(context).reshape(b, context.shape[1], 2, h, d).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, h * d))


class DecoderLayer(nn.Module):
    """Pre-norm self-attention, cross-attention (norm on the query only), MLP."""

    def __init__(self, cfg: HaMeRConfig):
        super().__init__()
        d = cfg.head_dim
        self.norm1 = nn.LayerNorm(d, eps=1e-5)
        self.self_attn = SelfAttention(d, cfg.head_heads, cfg.head_dim_head)
        self.norm2 = nn.LayerNorm(d, eps=1e-5)
        self.cross_attn = CrossAttention(d, cfg.embed_dim, cfg.head_heads, cfg.head_dim_head)
        self.norm3 = nn.LayerNorm(d, eps=1e-5)
        self.mlp = Mlp(d, cfg.head_mlp_dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.norm1(x))
        x = x + self.cross_attn(self.norm2(x), context)
        return x + self.mlp(self.norm3(x))


class ManoHead(nn.Module):
    """Tokens → (6D pose per joint [B,16,6], betas [B,10], weak-perspective cam (s,tx,ty) [B,3]).

    Each output is a linear read-out of the query plus the MANO mean parameters (`init_*`), which
    come from the checkpoint bit-exactly (the mean global orientation is nearly degenerate).
    """

    def __init__(self, cfg: HaMeRConfig):
        super().__init__()
        self.num_joints = cfg.num_joints
        self.query_embed = nn.Linear(1, cfg.head_dim)   # applied to a zero input: only its bias matters
        self.query_pos = nn.Parameter(torch.randn(1, 1, cfg.head_dim) * 0.02)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.head_depth))
        self.dec_pose = nn.Linear(cfg.head_dim, cfg.num_joints * 6)
        self.dec_betas = nn.Linear(cfg.head_dim, cfg.num_betas)
        self.dec_cam = nn.Linear(cfg.head_dim, 3)
        # Identity rotations, zero shape, s=4: a sane start for random-weight models.
        identity6d = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]).repeat(cfg.num_joints)
        self.register_buffer("init_pose", identity6d[None].clone())
        self.register_buffer("init_betas", torch.zeros(1, cfg.num_betas))
        self.register_buffer("init_cam", torch.tensor([[4.0, 0.0, 0.0]]))

    def forward(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b = context.shape[0]
        x = self.query_embed(context.new_zeros(b, 1, 1)) + self.query_pos
        for layer in self.layers:
            x = layer(x, context)
        x = x[:, 0]
        pose = self.dec_pose(x) + self.init_pose
        betas = self.dec_betas(x) + self.init_betas
        cam = self.dec_cam(x) + self.init_cam
        return pose.reshape(b, self.num_joints, 6), betas, cam
