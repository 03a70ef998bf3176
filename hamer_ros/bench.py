"""`hamer-ros bench`: per-stage latency of the mesh path per backend and precision, against the floor.

    hamer-ros bench [--checkpoint hamer.ckpt --mano MANO_RIGHT.pkl] [--size full|tiny]
                    [--device auto|cpu|cuda] [--backends eager,compile,tensorrt,onnx]
                    [--precisions fp32,fp16,bf16] [--hands 1,2] [--runs 20] [--json out.json]

Stages of one frame, all on the inference device: upload (pinned, non-blocking), crop
(crop_hands_torch), decode (the engine), mano (fp32 MANO + crop camera), download (the one
synchronisation). Each stage is timed with a synchronisation around it (median and p90); the
`frame` column times the same work with only the final synchronisation, as the pipeline runs it.

The floor of the decode stage is the roofline of the device as measured here: max(weight bytes
at the precision / bandwidth of a big device copy, FLOPs of the hands / throughput of a big matmul
in that dtype); "of floor" is floor / measured median. Vertex error is the worst vertex distance to
fp32 eager on the same crops. Without --checkpoint the weights are random (speed does not depend on
them; errors then only compare arithmetic).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

STAGES = ("upload", "crop", "decode", "mano", "download")


@dataclass
class DeviceRoof:
    name: str
    bandwidth: float                  # bytes/s, device copy (read + write)
    matmul: dict[str, float]          # FLOP/s per precision


@dataclass
class Row:
    backend: str
    precision: str
    hands: int
    stages: dict[str, tuple[float, float]]   # name -> (median, p90) ms
    frame: tuple[float, float]
    floor_ms: float
    vertex_error_mm: float
    note: str = ""

    @property
    def floor_fraction(self) -> float:
        return self.floor_ms / self.stages["decode"][0] if self.stages else float("nan")


# ----------------------------------------------------------------------------- CLI
def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("bench", help="latency per stage, backend and precision, against the floor",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="HaMeR checkpoint; default: random weights of --size")
    p.add_argument("--mano", help="MANO_RIGHT.pkl or its folder (with --checkpoint); default: the checkpoint's "
                   "own MANO, or a synthetic one with random weights")
    p.add_argument("--size", choices=("full", "tiny"), default="full", help="network size for random weights")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--backends", help="comma list of eager,compile,tensorrt,onnx "
                   "(default: eager on a CPU; eager,compile,tensorrt on a GPU)")
    p.add_argument("--precisions", help="comma list of fp32,bf16,fp16 (default: fp32,bf16 on a CPU; "
                   "fp32,fp16,bf16 on a GPU)")
    p.add_argument("--hands", default="1,2", help="hands per frame, comma list")
    p.add_argument("--buckets", default="1,2", help="batch buckets of compiled engines")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--frame-size", default="1280x720", help="WxH of the synthetic frame")
    p.add_argument("--cache-dir", help="engine cache (default ~/.cache/hamer_ros/engines)")
    p.add_argument("--force-rebuild", action="store_true", help="rebuild cached engines")
    p.add_argument("--self-check-mm", type=float, default=1.0, help="refuse engines with a larger vertex error")
    p.add_argument("--json", help="also write the rows here")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from .perception.engine import SUPPORTED, EagerEngine, make_engine

    device = _device(args.device)
    model = _model(args, device)
    cuda = device.type == "cuda"
    backends = _list(args.backends or ("eager,compile,tensorrt" if cuda else "eager"))
    precisions = _list(args.precisions or ("fp32,fp16,bf16" if cuda else "fp32,bf16"))
    hands = [int(h) for h in _list(args.hands)]
    buckets = tuple(int(b) for b in _list(args.buckets))
    width, height = (int(v) for v in args.frame_size.lower().split("x"))

    roof = measure_roof(device, precisions)
    flops = decode_flops(model.cfg)
    params = sum(p.numel() for p in model.network_state_dict().values())
    print(_header(model, device, roof, flops, params), flush=True)

    frame = synthetic_frame(width, height)
    reference = EagerEngine(model, "fp32", device, buckets)
    rows: list[Row] = []
    for backend in backends:
        for precision in precisions:
            if precision not in SUPPORTED.get(backend, ()):
                continue
            if backend == "compile":
                torch._dynamo.reset()   # dynamo's per-function graph limit is shared by all engines
            engine = make_engine(model, backend, precision, device=device, buckets=buckets,
                                 cache_dir=args.cache_dir, force_rebuild=args.force_rebuild,
                                 self_check_mm=args.self_check_mm)
            if (engine.name, engine.precision) != (backend, precision):
                for n in hands:
                    rows.append(Row(backend, precision, n, {}, (float("nan"),) * 2, float("nan"), float("nan"),
                                    f"not run: {engine.fallback_reason}"))
                print(_row_line(rows[-1]), flush=True)
                continue
            for n in hands:
                row = bench_engine(engine, reference, frame, n, args.runs, args.warmup)
                row.floor_ms = floor_ms(roof, precision, params, flops, n)
                rows.append(row)
                print(_row_line(row), flush=True)
            del engine
    print()
    print(table(rows))
    for n in hands:
        print(f"reference CPU crop (crop_hands, OpenCV), {n} hand(s): "
              f"{_fmt(cpu_crop_ms(frame, n, args.runs))} ms")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": asdict(roof), "gflop_per_crop": flops / 1e9,
                                               "parameters": params, "rows": [_row_dict(r) for r in rows]}, indent=1))
    return 0


def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _model(args: argparse.Namespace, device: torch.device) -> Any:
    from .model import HaMeR, HaMeRConfig

    if args.checkpoint:
        return HaMeR.from_checkpoint(args.checkpoint, args.mano, device=device)
    return random_model(HaMeRConfig() if args.size == "full" else HaMeRConfig.tiny(), device)


def random_model(cfg: Any, device: torch.device, seed: int = 0) -> Any:
    """A HaMeR of `cfg` with ViT-style random weights, made directly on `device` (no CPU copy of
    2.7 GB first), on the synthetic MANO. Unit LayerNorm gains and zero biases keep activations
    at a realistic scale through 32 blocks, which matters for a precision comparison."""
    from torch import nn

    from .model import HaMeR, ManoLayer
    from .testing import write_synthetic_mano

    with tempfile.TemporaryDirectory() as d:
        mano = ManoLayer.from_file(write_synthetic_mano(Path(d) / "MANO_RIGHT.pkl"))
    with torch.device("meta"):
        model = HaMeR(cfg, nn.Identity())
    model = model.to_empty(device=device)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.normal_(0.0, 0.02)
        model.head.init_pose.copy_(torch.tensor([1.0, 0, 0, 0, 1, 0]).repeat(cfg.num_joints))
        model.head.init_betas.zero_()
        model.head.init_cam.copy_(torch.tensor([[4.0, 0, 0]]))
    model.mano = mano.to(device)
    return model.eval()


# ----------------------------------------------------------------------------- roofline
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_seconds(fn: Callable[[], Any], device: torch.device, reps: int) -> float:
    fn()
    _sync(device)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return min(times)   # the roof is the best the device does, not a typical run


def measure_bandwidth(device: torch.device) -> float:
    """Bytes/s of a big device-to-device copy, counting the read and the write."""
    nbytes = (1 << 30) if device.type == "cuda" else (256 << 20)
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    return 2 * nbytes / _best_seconds(lambda: dst.copy_(src), device, 5)


def measure_matmul(device: torch.device, dtype: torch.dtype) -> float:
    """FLOP/s of a big square matmul in `dtype` (fp32 without TF32, torch's default).

    Through F.linear, the op the network's layers use: on CPUs without native bf16 a plain
    `a @ b` in bf16 takes a generic kernel 20x slower than linear's oneDNN one."""
    import torch.nn.functional as F

    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    return 2 * n ** 3 / _best_seconds(lambda: F.linear(a, b), device, 5)


def measure_roof(device: torch.device, precisions: list[str]) -> DeviceRoof:
    from .perception.engine import PRECISIONS

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    matmul = {p: measure_matmul(device, PRECISIONS[p] or torch.float32) for p in precisions if p in PRECISIONS}
    return DeviceRoof(name, measure_bandwidth(device), matmul)


def decode_flops(cfg: Any) -> float:
    """FLOPs (2 per multiply-add) of one crop through the decode network, counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    from .model import HaMeR

    with torch.device("meta"):
        model = HaMeR(cfg, torch.nn.Identity())
        x = torch.zeros(1, 3, cfg.image_size, cfg.image_size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.decode(x)
    return float(counter.get_total_flops())


def floor_ms(roof: DeviceRoof, precision: str, params: int, flops: float, hands: int) -> float:
    """Roofline: every weight read once per batch, every FLOP at the measured matmul rate."""
    bytes_per = 4 if precision == "fp32" else 2
    memory = params * bytes_per / roof.bandwidth
    compute = hands * flops / roof.matmul[precision]
    return 1000.0 * max(memory, compute)


# ----------------------------------------------------------------------------- frame timing
def synthetic_frame(width: int, height: int, seed: int = 0) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (max(height // 16, 2), max(width // 16, 2), 3)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def hand_boxes(width: int, height: int, hands: int) -> tuple[np.ndarray, np.ndarray]:
    """Hand-sized boxes spread across the frame, alternately right and left."""
    w, h = 0.12 * width, 0.25 * height
    xs = np.linspace(0.25, 0.75, hands) * width if hands > 1 else np.array([0.5 * width])
    boxes = np.stack([[x - w / 2, 0.5 * height - h / 2, x + w / 2, 0.5 * height + h / 2] for x in xs])
    return boxes.astype(np.float32), np.arange(hands) % 2 == 0


def _stats(ms: list[float]) -> tuple[float, float]:
    return statistics.median(ms), float(np.percentile(ms, 90))


def bench_engine(engine: Any, reference: Any, frame: np.ndarray, hands: int, runs: int, warmup: int) -> Row:
    from .perception.engine import to_host
    from .perception.gpu_crop import crop_hands_torch, upload_frame

    device, model = engine.device, engine.model
    boxes, is_right = hand_boxes(frame.shape[1], frame.shape[0], hands)
    state: dict[str, Any] = {}
    stages: dict[str, Callable[[], Any]] = {
        "upload": lambda: state.update(image=upload_frame(frame, device)),
        "crop": lambda: state.update(crops=crop_hands_torch(state["image"], boxes, is_right)),
        "decode": lambda: state.update(params=engine.decode(state["crops"].images)),
        "mano": lambda: state.update(out=model.hands_from_params(*state["params"])),
        "download": lambda: state.update(host=to_host(state["out"])),
    }
    per_stage: dict[str, list[float]] = {s: [] for s in STAGES}
    whole: list[float] = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            for name in STAGES:
                _sync(device)
                t = time.perf_counter()
                stages[name]()
                _sync(device)
                if i >= warmup:
                    per_stage[name].append(1000.0 * (time.perf_counter() - t))
        for i in range(warmup + runs):
            _sync(device)
            t = time.perf_counter()
            for name in STAGES:   # the download is the frame's only synchronisation
                stages[name]()
            if i >= warmup:
                whole.append(1000.0 * (time.perf_counter() - t))
        ref = reference.hands(state["crops"].images).vertices
        error = float(((state["out"].vertices - ref).norm(dim=-1) * 1000.0).max())
    return Row(engine.name, engine.precision, hands, {s: _stats(v) for s, v in per_stage.items()},
               _stats(whole), float("nan"), error)


def cpu_crop_ms(frame: np.ndarray, hands: int, runs: int) -> tuple[float, float]:
    from .perception.crop import crop_hands

    boxes, is_right = hand_boxes(frame.shape[1], frame.shape[0], hands)
    crop_hands(frame, boxes, is_right)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        crop_hands(frame, boxes, is_right)
        times.append(1000.0 * (time.perf_counter() - t))
    return _stats(times)


# ----------------------------------------------------------------------------- output
def _fmt(pair: tuple[float, float]) -> str:
    return f"{pair[0]:.3g} / {pair[1]:.3g}"


def _header(model: Any, device: torch.device, roof: DeviceRoof, flops: float, params: int) -> str:
    mm = ", ".join(f"{p} {v / 1e12:.3g} TFLOP/s" for p, v in roof.matmul.items())
    return (f"HaMeR decode ({model.cfg.depth}-block ViT, {model.cfg.embed_dim} wide): {flops / 1e9:.4g} GFLOP per "
            f"crop, {params / 1e6:.1f} M parameters ({params * 2 / 1e9:.3g} GB at 16 bit)\n"
            f"device {roof.name} ({device}), torch {torch.__version__}: copy bandwidth "
            f"{roof.bandwidth / 1e9:.3g} GB/s; matmul {mm}")


def _row_line(r: Row) -> str:
    if not r.stages:
        return f"{r.backend} {r.precision} x{r.hands}: {r.note}"
    return (f"{r.backend} {r.precision} x{r.hands}: decode {_fmt(r.stages['decode'])} ms, frame "
            f"{_fmt(r.frame)} ms, floor {r.floor_ms:.3g} ms, vertex error {r.vertex_error_mm:.3g} mm")


def table(rows: list[Row]) -> str:
    head = ("| backend | precision | hands | " + " | ".join(f"{s} ms" for s in STAGES)
            + " | frame ms (1 sync) | decode floor ms | of floor | vertex err mm |")
    lines = [head, "|" + "---|" * (len(STAGES) + 7)]
    for r in rows:
        if not r.stages:
            lines.append(f"| {r.backend} | {r.precision} | {r.hands} | " + " | ".join([""] * len(STAGES))
                         + f" | {r.note} | | | |")
            continue
        cells = [_fmt(r.stages[s]) for s in STAGES]
        lines.append(f"| {r.backend} | {r.precision} | {r.hands} | " + " | ".join(cells)
                     + f" | {_fmt(r.frame)} | {r.floor_ms:.3g} | {100 * r.floor_fraction:.1f} % "
                     f"| {r.vertex_error_mm:.3g} |")
    lines.append("(cells: median / p90)")
    return "\n".join(lines)


def _row_dict(r: Row) -> dict[str, Any]:
    d = asdict(r)
    d["floor_fraction"] = r.floor_fraction
    return d
