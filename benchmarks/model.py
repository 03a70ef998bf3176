"""Forward time of the full HaMeR network (ViT-H + head + MANO) on the current device.

Prints ms per forward at batch 1 and 2, fp32 and (where supported) bf16/fp16 autocast, with SDPA
attention (what the model uses) and the ratio against a plain matmul-softmax attention.
Random weights and a synthetic MANO: speed does not depend on the values.

    python -m benchmarks model [--device cuda] [--runs 5] [--tiny]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the repository: hamer_ros_testing

import argparse
import contextlib
import statistics
import tempfile
import time

import torch

from hamer_ros.model import HaMeR, HaMeRConfig, ManoLayer
from hamer_ros.model import vit
from hamer_ros_testing import write_synthetic_mano


def plain_attention(self: vit.Attention, x: torch.Tensor) -> torch.Tensor:
    b, n, c = x.shape
    q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
    a = ((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)).softmax(-1) @ v
    return self.proj(a.transpose(1, 2).reshape(b, n, c))


@contextlib.contextmanager
def attention(kind: str):
    original = vit.Attention.forward
    if kind == "plain":
        vit.Attention.forward = plain_attention
    try:
        yield
    finally:
        vit.Attention.forward = original


def build(cfg: HaMeRConfig, device: str) -> HaMeR:
    with tempfile.TemporaryDirectory() as d:
        mano = ManoLayer.from_file(write_synthetic_mano(Path(d) / "MANO_RIGHT.pkl"))
    with torch.device("meta"):
        model = HaMeR(cfg, torch.nn.Identity())
    model = model.to_empty(device=device)
    for p in model.parameters():
        p.data.normal_(0, 0.02)
    model.head.init_pose.copy_(torch.tensor([1.0, 0, 0, 0, 1, 0]).repeat(cfg.num_joints))
    model.head.init_betas.zero_()
    model.head.init_cam.copy_(torch.tensor([[4.0, 0, 0]]))
    model.mano = mano.to(device)
    return model.eval()


def time_forward(model: HaMeR, batch: int, dtype: torch.dtype | None, runs: int, device: str) -> float:
    x = torch.randn(batch, 3, 256, 256, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    ctx = torch.autocast(device_type=device.split(":")[0], dtype=dtype) if dtype else contextlib.nullcontext()
    times = []
    with torch.inference_mode(), ctx:
        for i in range(runs + 1):
            sync()
            t = time.perf_counter()
            model(x)
            sync()
            if i:  # first run is warm-up
                times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tiny", action="store_true", help="the tiny test config instead of ViT-H")
    args = ap.parse_args()
    cfg = HaMeRConfig.tiny() if args.tiny else HaMeRConfig()
    model = build(cfg, args.device)
    dtypes: list[tuple[str, torch.dtype | None]] = [("fp32", None), ("bf16", torch.bfloat16)]
    if args.device.startswith("cuda"):
        dtypes.append(("fp16", torch.float16))
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU ({torch.get_num_threads()} threads)"
    print(f"HaMeR {'tiny' if args.tiny else 'ViT-H/16'} forward, {name}, torch {torch.__version__}, "
          f"median of {args.runs}")
    print("| precision | batch | SDPA ms | plain ms | plain / SDPA |")
    print("|---|---|---|---|---|")
    for label, dtype in dtypes:
        for batch in (1, 2):
            with attention("sdpa"):
                fast = time_forward(model, batch, dtype, args.runs, args.device)
            with attention("plain"):
                slow = time_forward(model, batch, dtype, args.runs, args.device)
            print(f"| {label} | {batch} | {fast:.1f} | {slow:.1f} | {slow / fast:.2f} |", flush=True)


if __name__ == "__main__":
    main()
