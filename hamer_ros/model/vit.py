"""ViTPose's ViT backbone as HaMeR uses it (keys match the checkpoint's `backbone.*`)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import HaMeRConfig


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, padding: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # B, rows*cols (raster order), C


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        # Same math as softmax(q·kᵀ/√d)·v; lets GPUs pick a fused kernel.
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Returns tokens B×(rows·cols)×C in raster order; the head consumes them as its context."""

    def __init__(self, cfg: HaMeRConfig):
        super().__init__()
        rows, cols = cfg.grid
        self.crop_margin = (cfg.image_size - cfg.crop_width) // 2
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.patch_padding, cfg.embed_dim)
        # Slot 0 is the pretraining cls position; there is no cls token, its embedding is added
        # to every token instead.
        self.pos_embed = nn.Parameter(torch.zeros(1, rows * cols + 1, cfg.embed_dim))
        self.blocks = nn.ModuleList(Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.last_norm = nn.LayerNorm(cfg.embed_dim, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        m = self.crop_margin
        x = self.patch_embed(images[:, :, :, m:images.shape[-1] - m])
        x = x + self.pos_embed[:, 1:] + self.pos_embed[:, :1]
        for block in self.blocks:
            x = block(x)
        return self.last_norm(x)
