"""Checkpoint load time of the full-size (ViT-H) HaMeR, as the CLI and the node load it.

Writes a full-size checkpoint with random weights in the official layout (2.7 GB, once, into
--work; reused when already there), then times `HaMeR.from_checkpoint` and the first forward
pass after it, a few times (the first run may read from disk, later ones from the page cache).

    python -m benchmarks load [--work /tmp/hamer_full] [--runs 3] [--mano-file]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the repository: hamer_ros_testing

import argparse
import inspect
import time

import torch

from hamer_ros.model import HaMeR, HaMeRConfig, ManoLayer
from hamer_ros_testing import synthetic_mano_arrays, write_checkpoint, write_synthetic_mano


def full_size_checkpoint(work: Path) -> Path:
    ckpt = work / "hamer_ckpts" / "checkpoints" / "hamer.ckpt"
    if ckpt.is_file():
        return ckpt
    arrays = synthetic_mano_arrays(0)
    arrays["shapedirs"] = arrays["shapedirs"][:, :, :10]
    with torch.device("meta"):
        model = HaMeR(HaMeRConfig(), torch.nn.Identity())
    model = model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for t in model.state_dict().values():   # values do not matter for timing; cheap to make
            t.normal_(0, 0.02, generator=g)
    model.mano = ManoLayer(arrays)
    return write_checkpoint(work / "hamer_ckpts", model)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/hamer_full"), help="where the checkpoint is kept")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mano-file", action="store_true",
                    help="also pass a MANO_RIGHT.pkl (code before MANO-from-checkpoint needs one)")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    ckpt = full_size_checkpoint(args.work)
    print(f"checkpoint {ckpt} ({ckpt.stat().st_size / 1e9:.2f} GB), ready in {time.perf_counter() - t:.1f} s")
    mano = write_synthetic_mano(args.work / "MANO_RIGHT.pkl") if args.mano_file else None
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, mano: "
          f"{'file' if mano else 'from the checkpoint'}; from_checkpoint{inspect.signature(HaMeR.from_checkpoint)}")
    for run in range(args.runs):
        t0 = time.perf_counter()
        model = HaMeR.from_checkpoint(ckpt, mano, device="cpu") if mano else HaMeR.from_checkpoint(ckpt, device="cpu")
        t1 = time.perf_counter()
        with torch.no_grad():
            model(x)
        t2 = time.perf_counter()
        print(f"run {run + 1}: load {t1 - t0:6.2f} s   first forward {t2 - t1:6.2f} s   total {t2 - t0:6.2f} s")
        del model


if __name__ == "__main__":
    main()
