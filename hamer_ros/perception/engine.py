"""Inference engines for the HaMeR network: one interface, backends chosen by name.

    engine = make_engine(model, backend="tensorrt", precision="fp16", device="cuda")
    pose6d, betas, cam = engine.decode(crops)      # same contract as HaMeR.decode
    hands = model.hands_from_params(pose6d, betas, cam)   # MANO stays fp32 torch on the device

Backends
  eager     the model as it is; fp32, or bf16/fp16 autocast with LayerNorm and attention in fp32
  compile   torch.compile, with CUDA graphs on a GPU; batches padded to fixed buckets so a varying
            hand count never recompiles
  tensorrt  Torch-TensorRT (dynamo path) engine with a dynamic batch up to the largest bucket,
            cached on disk under a key of everything it depends on
  onnx      the decode network exported to ONNX (dynamic batch), run with ONNX Runtime: the
            portable check of the file that `trtexec` turns into an engine on a Jetson

Every engine other than fp32 eager is checked against fp32 eager when it is built (vertices, mm);
an engine that cannot be built or fails the check is refused with a logged reason and the next
candidate is tried: the requested backend, then eager at the requested precision, then fp32 eager.

Only the learned network (ViT + head) goes through a backend. MANO is a few small matmuls and a
kinematic chain whose rotations lose millimetres in half precision; it stays fp32 torch on the
same device (HaMeR.hands_from_params), which also keeps the licensed MANO data out of every
exported file.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib
import json
import logging
import math
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..model import HaMeR, HaMeROutput

log = logging.getLogger(__name__)

BACKENDS = ("eager", "compile", "tensorrt", "onnx")
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# ONNX Runtime is the fp32 check of the exported file; reduced precision is trtexec's job on the target.
SUPPORTED = {"eager": ("fp32", "bf16", "fp16"), "compile": ("fp32", "bf16", "fp16"),
             "tensorrt": ("fp32", "bf16", "fp16"), "onnx": ("fp32",)}
DEFAULT_OPSET = 18   # >= 17: LayerNorm stays one LayerNormalization node (see export_onnx)
Decoded = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class BackendUnavailable(RuntimeError):
    """The backend cannot run here (no GPU, package missing); not a bug."""


# ----------------------------------------------------------------------------- precision
_LOW = (torch.float16, torch.bfloat16)


class Fp32Islands(TorchFunctionMode):
    """Runs LayerNorm and attention in fp32 whenever their input is fp16/bf16, casting back after.

    ViTs lose accuracy when the LayerNorm statistics or the attention softmax are computed in
    half precision (large activations overflow fp16; bf16 has 8 mantissa bits). Autocast already
    keeps layer_norm in fp32 but leaves attention to the kernel, and a TensorRT build obeys only
    the dtypes written in the graph. Intercepting the two functionals covers every module that
    uses them without touching the model, and the casts land in any graph traced under this mode
    (torch.export, torch.compile), which is what strongly typed TensorRT builds respect. fp32
    inputs pass straight through, so fp32 results are bit-identical. Attention is < 3 % of the
    ViT-H FLOPs (192 tokens), so running all of it in fp32 costs little.
    """

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is F.layer_norm and args[0].dtype in _LOW:
            return _fp32_call(func, args, kwargs, out_dtype=args[0].dtype)
        if func is F.scaled_dot_product_attention and args[0].dtype in _LOW:
            return _fp32_call(func, args, kwargs, out_dtype=args[0].dtype)
        return func(*args, **kwargs)


def _fp32_call(func: Callable, args: tuple, kwargs: dict, out_dtype: torch.dtype) -> torch.Tensor:
    def up(v: Any) -> Any:
        return v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v

    with torch.autocast(args[0].device.type, enabled=False):
        out = func(*map(up, args), **{k: up(v) for k, v in kwargs.items()})
    return out.to(out_dtype)


def precision_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast to the precision's dtype with the fp32 islands; nothing at all for fp32."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(torch.autocast(device.type, dtype=dtype))
    stack.enter_context(Fp32Islands())
    return stack


# ----------------------------------------------------------------------------- export
class DecodeNetwork(nn.Module):
    """HaMeR.decode as a module (backbone + head only, no MANO) for torch.export and ONNX."""

    def __init__(self, model: HaMeR):
        super().__init__()
        self.backbone = model.backbone
        self.head = model.head

    def forward(self, images: torch.Tensor) -> Decoded:
        return self.head(self.backbone(images))   # == HaMeR.decode


def _network_in(model: HaMeR, dtype: torch.dtype | None) -> nn.Module:
    """The decode network with its parameters in `dtype` (a copy; the model stays fp32).

    Buffers stay fp32: the head adds its mean parameters (the nearly degenerate mean global
    orientation) to the read-outs, and fp32 + half promotes to fp32 -- the autocast behaviour."""
    net = DecodeNetwork(model)
    if dtype is None:
        return net.eval()
    net = copy.deepcopy(net)
    with torch.no_grad():
        for p in net.parameters():
            p.data = p.data.to(dtype)
    return net.eval()


def export_program(model: HaMeR, precision: str = "fp32", max_batch: int | None = None
                   ) -> torch.export.ExportedProgram:
    """torch.export of the decode network with a dynamic batch axis (1 .. max_batch), on the
    model's device.

    For fp16/bf16 the weights are converted (in a copy) and the graph carries explicit fp32 casts
    around LayerNorm and attention (Fp32Islands during the trace), so a strongly typed TensorRT
    build keeps them in fp32."""
    dtype = PRECISIONS[precision]
    device = _model_device(model)
    net = _network_in(model, dtype)
    size = model.cfg.image_size
    if max_batch == 1:   # nothing dynamic about it
        example, dynamic = torch.zeros(1, 3, size, size), None
    else:   # an example of size 1 would specialise the batch to a constant
        example = torch.zeros(2, 3, size, size)
        batch = torch.export.Dim("batch", min=1, max=max_batch) if max_batch else torch.export.Dim("batch", min=1)
        dynamic = ({0: batch},)
    example = example.to(device, dtype or torch.float32)
    islands = Fp32Islands() if dtype is not None else contextlib.nullcontext()
    with islands, torch.no_grad():
        return torch.export.export(net, (example,), dynamic_shapes=dynamic)


def export_onnx(model: HaMeR, path: str | Path, opset: int = DEFAULT_OPSET) -> Path:
    """The fp32 decode network as ONNX: input `images` [batch,3,256,256] (normalised crops),
    outputs `pose6d` [batch,16,6], `betas` [batch,10], `cam` [batch,3]; batch is dynamic.

    On a Jetson, build the engine with e.g.
        trtexec --onnx=decode.onnx --fp16 --minShapes=images:1x3x256x256 \\
                --optShapes=images:2x3x256x256 --maxShapes=images:2x3x256x256 --saveEngine=decode.plan
    opset >= 17 keeps LayerNorm a single LayerNormalization node, which TensorRT imports as its
    normalisation layer instead of an fp16 chain of reductions that overflows (TensorRT's own
    advice for fp16 LayerNorm); check the engine's vertices against fp32 (onnx_max_error gives the
    ONNX side) before trusting it. Weights larger than
    protobuf's 2 GB limit (ViT-H: 2.7 GB) go to `<path>.data` next to the file; keep them together.
    MANO is not exported: it stays in torch on the device (see the module docstring).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    program = export_program(model, "fp32")
    big = sum(p.numel() * p.element_size() for p in model.parameters()) > (1 << 30)
    torch.onnx.export(program, f=str(path), input_names=["images"], output_names=["pose6d", "betas", "cam"],
                      opset_version=opset, dynamo=True, external_data=big)
    return path


def onnx_max_error(path: str | Path, model: HaMeR, batches: Sequence[int] = (1, 3), seed: int = 0) -> float:
    """Max |ONNX Runtime - eager fp32| over the decode outputs, on the CPU, at each batch size."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    cpu_model = model if _model_device(model).type == "cpu" else copy.deepcopy(model).cpu()
    for b in batches:
        x = check_images(b, model.cfg.image_size, torch.device("cpu"), seed=seed + b)
        with torch.inference_mode():
            ref = cpu_model.decode(x)
        got = session.run(None, {"images": x.numpy()})
        worst = max(worst, *(float((torch.from_numpy(g) - r).abs().max()) for g, r in zip(got, ref)))
    return worst


# ----------------------------------------------------------------------------- cache key
@dataclass(frozen=True)
class CacheKey:
    """Everything a cached engine depends on; `digest()` names its file.

    toolchain holds the versions of whatever produced the file (torch, CUDA, Torch-TensorRT,
    TensorRT for an engine; torch, onnxscript and the opset for ONNX). graph hashes the model
    config and the source of the code that is traced (ViT, head, this module's export path):
    an edit there changes the program even when the weights do not.
    """

    backend: str
    gpu: str
    capability: str
    toolchain: tuple[tuple[str, str], ...]
    precision: str
    buckets: tuple[int, ...]
    weights: str
    graph: str

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


def weights_hash(state: dict[str, torch.Tensor], samples: int = 4096) -> str:
    """A cheap, exact-enough fingerprint of a 2.7 GB state dict, computed where the tensors live.

    Per tensor: name, dtype, shape, the exact int64 sum of its bytes read as 32-bit words, and
    `samples` evenly strided words. The integer sum sees a change to any single element (float
    sums would round, and differ between devices); the samples see permutations that keep the
    sum. Reading 2.7 GB once is ~2 ms on an H100 (~1 s on a CPU) versus seconds for sha256 of
    every byte, and everything comes back to the host in one transfer. A deliberate edit that
    keeps both the sum and every sampled word is what force_rebuild is for.
    """
    h = hashlib.sha256()
    parts: list[torch.Tensor] = []
    for name in sorted(state):
        t = state[name].detach()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        words = _as_words(t)
        if words.numel() == 0:
            continue
        idx = torch.linspace(0, words.numel() - 1, min(samples, words.numel()), device=words.device).long()
        parts += [words.sum(dtype=torch.int64).reshape(1), words[idx].long()]
    if parts:
        h.update(torch.cat(parts).cpu().numpy().tobytes())
    return h.hexdigest()


def _as_words(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bytes as int32 words (uint8 when the byte count is not a multiple of 4)."""
    raw = t.contiguous().reshape(-1).view(torch.uint8)
    if raw.numel() % 4:
        return raw
    if raw.storage_offset() % 4:
        raw = raw.clone()
    return raw.view(torch.int32)


def graph_hash(model: HaMeR, extra: str = "") -> str:
    from ..model import head, vit

    h = hashlib.sha256(json.dumps(model.cfg.as_dict(), sort_keys=True, default=str).encode())
    for module in (vit, head, importlib.import_module(__name__)):
        h.update(Path(module.__file__).read_bytes())
    h.update(extra.encode())
    return h.hexdigest()


def _version(module: str) -> str:
    try:
        return str(importlib.import_module(module).__version__)
    except Exception:   # absent or broken install: part of the key either way
        return "absent"


def gpu_identity(device: torch.device) -> tuple[str, str]:
    if device.type != "cuda":
        return "cpu", ""
    major, minor = torch.cuda.get_device_capability(device)
    return torch.cuda.get_device_name(device), f"{major}.{minor}"


def cache_key(model: HaMeR, backend: str, precision: str, buckets: Sequence[int], device: torch.device,
              toolchain: dict[str, str] | None = None) -> CacheKey:
    """The key of the engine this process would build now (see CacheKey)."""
    if toolchain is None:
        toolchain = {"torch": torch.__version__, "cuda": str(torch.version.cuda),
                     "torch_tensorrt": _version("torch_tensorrt"), "tensorrt": _version("tensorrt")}
    gpu, capability = gpu_identity(device)
    return CacheKey(backend=backend, gpu=gpu, capability=capability, toolchain=tuple(sorted(toolchain.items())),
                    precision=precision, buckets=tuple(buckets), weights=weights_hash(model.network_state_dict()),
                    graph=graph_hash(model))


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "hamer_ros" / "engines"


def _write_atomic(path: Path, data: bytes) -> None:
    """A half-written engine must never be loaded: write beside it, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def load_or_build(path: Path, build: Callable[[], bytes], load: Callable[[bytes], Any], force_rebuild: bool) -> Any:
    """`load` of the cached file at `path`, or of a fresh `build()` written there first.

    A cached file that `load` rejects with a RuntimeError (a corrupt file, an engine TensorRT
    cannot deserialize) is rebuilt rather than trusted."""
    if path.is_file() and not force_rebuild:
        log.info("Loading cached engine %s", path)
        try:
            return load(path.read_bytes())
        except RuntimeError as e:
            log.warning("Cached engine %s is unusable (%s); rebuilding it.", path, e)
    blob = build()
    _write_atomic(path, blob)
    log.info("Engine cached at %s (%.0f MB)", path, len(blob) / 1e6)
    return load(blob)


@contextlib.contextmanager
def _progress(what: str, every_s: float = 30.0) -> Iterator[None]:
    """Logs while a long build runs, so minutes of silence do not look like a hang."""
    t0 = time.monotonic()
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            log.info("%s: still running, %.0f s so far", what, time.monotonic() - t0)

    log.info("%s: started", what)
    thread = threading.Thread(target=beat, name="engine-build-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    log.info("%s: done in %.1f s", what, time.monotonic() - t0)


# ----------------------------------------------------------------------------- engines
class Engine:
    """decode(images [B,3,256,256] fp32, normalised) -> (pose6d [B,16,6], betas [B,10], cam [B,3]),
    fp32 on `device`. Subclasses implement `_forward` for one chunk of at most `max_batch`."""

    name = "engine"
    pad_to_buckets = False   # static-shape backends run only the bucket sizes they were built for

    def __init__(self, model: HaMeR, precision: str, device: torch.device, buckets: Sequence[int]):
        self.model = model
        self.precision = precision
        self.device = device
        self.buckets = tuple(buckets)
        self.fallback_reason = ""            # why this engine stands in for the one asked for
        self.check: CheckResult | None = None

    @property
    def max_batch(self) -> int | None:
        """Largest batch one `_forward` takes; bigger batches are split. None: any."""
        return None

    def decode(self, images: torch.Tensor) -> Decoded:
        images = images.to(self.device, torch.float32, non_blocking=True)
        n = images.shape[0]
        if n == 0:
            return self._empty()
        step = self.max_batch or n
        parts = [self._decode_chunk(images[i:i + step]) for i in range(0, n, step)]
        if len(parts) == 1:
            return parts[0]
        return tuple(torch.cat(p) for p in zip(*parts))  # type: ignore[return-value]

    def hands(self, images: torch.Tensor) -> HaMeROutput:
        """decode + fp32 MANO and camera on the same device."""
        with torch.inference_mode():
            return self.model.hands_from_params(*self.decode(images))

    def _decode_chunk(self, x: torch.Tensor) -> Decoded:
        n = x.shape[0]
        if self.pad_to_buckets:
            size = next(b for b in self.buckets if b >= n)
            if size > n:   # zero crops: finite, and their rows are dropped below
                x = torch.cat((x, x.new_zeros((size - n, *x.shape[1:]))))
        out = self._forward(x)
        return tuple(t[:n].float() for t in out)  # type: ignore[return-value]

    def _forward(self, x: torch.Tensor) -> Decoded:
        raise NotImplementedError

    def _empty(self) -> Decoded:
        cfg = self.model.cfg
        z = lambda *s: torch.zeros(0, *s, device=self.device)  # noqa: E731
        return z(cfg.num_joints, 6), z(cfg.num_betas), z(3)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, precision={self.precision!r}, device={self.device})"


class EagerEngine(Engine):
    name = "eager"

    def _forward(self, x: torch.Tensor) -> Decoded:
        with torch.inference_mode(), precision_context(self.device, self.precision):
            return self.model.decode(x)


class CompiledEngine(Engine):
    """torch.compile of decode, one static graph per bucket, compiled and warmed at build time.

    On a GPU mode="reduce-overhead" records a CUDA graph per bucket: a frame's forward becomes
    one graph launch instead of ~1000 kernel launches. Outputs of a CUDA graph are overwritten by
    its next replay, hence the copies in _forward."""

    name = "compile"
    pad_to_buckets = True

    @property
    def max_batch(self) -> int | None:
        return max(self.buckets)

    def __init__(self, model: HaMeR, precision: str, device: torch.device, buckets: Sequence[int]):
        super().__init__(model, precision, device, buckets)
        self._cuda = device.type == "cuda"
        self._compiled = torch.compile(model.decode, mode="reduce-overhead" if self._cuda else None,
                                       dynamic=False, fullgraph=True)
        size = model.cfg.image_size
        for b in self.buckets:
            with _progress(f"torch.compile of HaMeR decode, batch {b}"):
                for _ in range(3):   # compile, then CUDA-graph warm-up and recording
                    self._forward(torch.zeros(b, 3, size, size, device=device))

    def _forward(self, x: torch.Tensor) -> Decoded:
        if self._cuda:
            torch.compiler.cudagraph_mark_step_begin()
        with torch.inference_mode(), precision_context(self.device, self.precision):
            out = self._compiled(x)
        return tuple(t.clone() for t in out)  # type: ignore[return-value]


class TensorRTEngine(Engine):
    """One TensorRT engine (Torch-TensorRT dynamo path, strongly typed) with a dynamic batch of
    1 .. max(buckets), optimised for the largest bucket; cached on disk.

    The cache holds the serialized TensorRT engine itself, run here through TensorRT's own
    runtime API: that format and API are stable across Torch-TensorRT releases, and loading it
    needs neither a re-trace nor Torch-TensorRT's custom ops."""

    name = "tensorrt"

    @property
    def max_batch(self) -> int | None:
        return max(self.buckets)   # the engine's optimisation profile ends there

    def __init__(self, model: HaMeR, precision: str, device: torch.device, buckets: Sequence[int],
                 cache_dir: Path, force_rebuild: bool):
        super().__init__(model, precision, device, buckets)
        if device.type != "cuda":
            raise BackendUnavailable(f"TensorRT needs a CUDA device, got {device}")
        for module in ("tensorrt", "torch_tensorrt"):
            try:
                importlib.import_module(module)
            except Exception as e:
                raise BackendUnavailable(f"{module} is not importable ({type(e).__name__}: {e}); install "
                                         f"torch-tensorrt built for torch {torch.__version__}") from e
        key = cache_key(model, self.name, precision, self.buckets, device)
        self.cache_path = Path(cache_dir) / f"hamer-decode-{key.digest()[:40]}.engine"

        def build() -> bytes:
            blob = self._build(key)
            # what the hashed name stands for, for people clearing the cache
            _write_atomic(self.cache_path.with_suffix(".json"), json.dumps(asdict(key), indent=1).encode())
            return blob

        self._runner = load_or_build(self.cache_path, build, lambda blob: _TrtRunner(blob, model.cfg),
                                     force_rebuild)

    def _build(self, key: CacheKey) -> bytes:
        import torch_tensorrt

        size, top = self.model.cfg.image_size, max(self.buckets)
        dtype = PRECISIONS[self.precision] or torch.float32
        log.info("Building a TensorRT engine for HaMeR (%s, batch 1..%d) on %s: this takes minutes "
                 "once; later starts load it from the cache.", self.precision, top, key.gpu)
        with _progress("torch.export of the decode network"):
            program = export_program(self.model, self.precision, max_batch=top)
        spec = torch_tensorrt.Input(min_shape=(1, 3, size, size), opt_shape=(top, 3, size, size),
                                    max_shape=(top, 3, size, size), dtype=dtype)
        with _progress("TensorRT engine build"):
            blob = torch_tensorrt.dynamo.convert_exported_program_to_serialized_trt_engine(
                program, arg_inputs=[spec], use_explicit_typing=True, device=self.device)
        if not blob:
            raise RuntimeError("Torch-TensorRT returned no engine (see its log above)")
        return bytes(blob)

    def _forward(self, x: torch.Tensor) -> Decoded:
        return self._runner(x)


class _TrtRunner:
    """Executes a serialized engine on torch's current CUDA stream, with torch-allocated I/O."""

    def __init__(self, blob: bytes, cfg: Any):
        import tensorrt as trt

        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(blob)
        if self.engine is None:
            raise RuntimeError("TensorRT could not deserialize the engine (another TensorRT version or GPU?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = self.engine.get_tensor_mode
        self.inputs = [n for n in names if mode(n) == trt.TensorIOMode.INPUT]
        # outputs told apart by their shapes, which differ, not by generated names
        by_shape = {tuple(self.engine.get_tensor_shape(n))[1:]: n for n in names if mode(n) == trt.TensorIOMode.OUTPUT}
        want = [(cfg.num_joints, 6), (cfg.num_betas,), (3,)]
        if len(self.inputs) != 1 or sorted(by_shape) != sorted(want):
            raise RuntimeError(f"engine I/O {self.inputs} -> {by_shape} is not images -> pose6d, betas, cam {want}")
        self.outputs = [by_shape[w] for w in want]
        self.dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}

    def __call__(self, x: torch.Tensor) -> Decoded:
        name = self.inputs[0]
        x = x.to(self.dtypes[name]).contiguous()
        self.context.set_input_shape(name, tuple(x.shape))
        self.context.set_tensor_address(name, x.data_ptr())
        outs = []
        for n in self.outputs:
            t = torch.empty(tuple(self.context.get_tensor_shape(n)), dtype=self.dtypes[n], device=x.device)
            self.context.set_tensor_address(n, t.data_ptr())
            outs.append(t)
        # same stream as the caller: the allocator's stream ordering keeps x alive long enough
        if not self.context.execute_async_v3(torch.cuda.current_stream(x.device).cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        return tuple(outs)  # type: ignore[return-value]


def _torch_dtype(trt: Any, dt: Any) -> torch.dtype:
    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16,
             trt.DataType.INT32: torch.int32, trt.DataType.BOOL: torch.bool}
    for name, torch_dt in (("BF16", torch.bfloat16), ("INT64", torch.int64)):
        if hasattr(trt.DataType, name):
            table[getattr(trt.DataType, name)] = torch_dt
    return table[dt]


class OnnxEngine(Engine):
    """The exported ONNX file run by ONNX Runtime (CUDA provider on a GPU, else CPU).

    A check and portability path, not the fast one: tensors cross to the host and back."""

    name = "onnx"

    def __init__(self, model: HaMeR, precision: str, device: torch.device, buckets: Sequence[int],
                 cache_dir: Path, force_rebuild: bool):
        super().__init__(model, precision, device, buckets)
        try:
            import onnxruntime as ort
        except Exception as e:
            raise BackendUnavailable(f"onnxruntime is not importable ({e}); pip install hamer_ros[onnx]") from e
        provider = "CUDAExecutionProvider" if device.type == "cuda" else "CPUExecutionProvider"
        if provider not in ort.get_available_providers():
            raise BackendUnavailable(f"onnxruntime has no {provider} (has {ort.get_available_providers()})")
        toolchain = {"torch": torch.__version__, "onnxscript": _version("onnxscript"), "opset": str(DEFAULT_OPSET)}
        # the file is portable and its batch dynamic: no GPU and no buckets in its key
        key = cache_key(model, self.name, precision, (), torch.device("cpu"), toolchain)
        folder = Path(cache_dir) / f"hamer-decode-{key.digest()[:40]}-onnx"
        path = folder / "decode.onnx"
        if force_rebuild or not path.is_file():
            with _progress(f"ONNX export to {path}"):
                _export_onnx_atomic(model, folder)
        self.cache_path = path
        self._session = ort.InferenceSession(str(path), providers=[provider])

    def _forward(self, x: torch.Tensor) -> Decoded:
        outs = self._session.run(None, {"images": x.detach().cpu().numpy()})
        return tuple(torch.from_numpy(o).to(self.device) for o in outs)  # type: ignore[return-value]


def _export_onnx_atomic(model: HaMeR, folder: Path) -> None:
    """Export into a scratch folder, then rename it into place: the .onnx and its external
    weights (referenced by file name) appear together or not at all."""
    import shutil

    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(scratch, ignore_errors=True)
    export_onnx(model, scratch / "decode.onnx")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(scratch, folder)


def to_host(out: HaMeROutput) -> dict[str, np.ndarray]:
    """Every output as float32 numpy in one device-to-host copy: the frame's one synchronisation
    (a `.cpu()` per field would wait for the device once per field)."""
    fields = {k: v.detach().float() for k, v in out._asdict().items()}
    n = next(iter(fields.values())).shape[0]
    widths = [math.prod(v.shape[1:]) for v in fields.values()]
    flat = torch.cat([v.reshape(n, w) for v, w in zip(fields.values(), widths)], dim=1).cpu().numpy()
    cols = np.cumsum([0] + widths)
    return {k: flat[:, a:b].reshape(v.shape) for (k, v), a, b in zip(fields.items(), cols[:-1], cols[1:])}


# ----------------------------------------------------------------------------- self-check
@dataclass
class CheckResult:
    ok: bool
    max_mm: float                     # worst vertex distance to fp32 eager over all check inputs
    mean_mm: float
    bound_mm: float
    batches: tuple[int, ...]
    reason: str = ""
    per_batch_max_mm: dict[int, float] = field(default_factory=dict)


def check_images(batch: int, size: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    """Deterministic image-like crops: smooth random colour fields in the normalised range.

    Smooth fields resemble real crops more than white noise does, and keep the check about
    arithmetic rather than about the network's behaviour far outside its training data."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, 8, 8, generator=g)
    pixels = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return ((pixels - mean) / std).to(device)


def check_engine(engine: Engine, model: HaMeR, bound_mm: float = 1.0, batches: Sequence[int] | None = None,
                 seed: int = 0) -> CheckResult:
    """Vertices of `engine` against fp32 eager on a few crops, one batch per bucket (so every
    compiled shape is exercised); refuses non-finite output and errors above `bound_mm`."""
    batches = tuple(batches or engine.buckets)
    worst, total, count, per = 0.0, 0.0, 0, {}
    for b in batches:
        x = check_images(b, model.cfg.image_size, engine.device, seed=seed + b)
        with torch.inference_mode():
            ref = model.hands_from_params(*model.decode(x)).vertices
            got = engine.hands(x).vertices
        if not torch.isfinite(got).all():
            return CheckResult(False, float("inf"), float("inf"), bound_mm, batches,
                               f"non-finite vertices at batch {b}", per)
        dist = (got - ref).norm(dim=-1) * 1000.0
        per[b] = float(dist.max())
        worst = max(worst, per[b])
        total += float(dist.sum())
        count += dist.numel()
    ok = worst <= bound_mm
    reason = "" if ok else f"vertex error {worst:.3g} mm exceeds the {bound_mm:g} mm bound"
    return CheckResult(ok, worst, total / max(count, 1), bound_mm, batches, reason, per)


# ----------------------------------------------------------------------------- factory
def _build_eager(model: HaMeR, precision: str, device: torch.device, buckets: Sequence[int], **_: Any) -> Engine:
    return EagerEngine(model, precision, device, buckets)


def _build_compile(model: HaMeR, precision: str, device: torch.device, buckets: Sequence[int], **_: Any) -> Engine:
    return CompiledEngine(model, precision, device, buckets)


def _build_tensorrt(model: HaMeR, precision: str, device: torch.device, buckets: Sequence[int],
                    cache_dir: Path, force_rebuild: bool) -> Engine:
    return TensorRTEngine(model, precision, device, buckets, cache_dir, force_rebuild)


def _build_onnx(model: HaMeR, precision: str, device: torch.device, buckets: Sequence[int],
                cache_dir: Path, force_rebuild: bool) -> Engine:
    return OnnxEngine(model, precision, device, buckets, cache_dir, force_rebuild)


BUILDERS: dict[str, Callable[..., Engine]] = {
    "eager": _build_eager, "compile": _build_compile, "tensorrt": _build_tensorrt, "onnx": _build_onnx}


def make_engine(model: HaMeR, backend: str = "eager", precision: str = "fp32",
                device: torch.device | str | None = None, buckets: Sequence[int] = (1, 2),
                cache_dir: str | Path | None = None, force_rebuild: bool = False,
                self_check_mm: float = 1.0) -> Engine:
    """The engine asked for, or the best one that works here (see the module docstring).

    The model is moved to `device` (default: where its weights are) and put in eval mode; it
    remains the fp32 reference for the self-check and runs MANO for every engine."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if precision not in SUPPORTED[backend]:
        raise ValueError(f"backend {backend!r} supports precisions {SUPPORTED[backend]}, got {precision!r}")
    buckets = tuple(sorted({int(b) for b in buckets}))
    if not buckets or buckets[0] < 1:
        raise ValueError(f"buckets must be positive batch sizes, got {buckets}")
    device = torch.device(device) if device is not None else _model_device(model)
    model.to(device).eval()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    candidates = [(backend, precision), ("eager", precision), ("eager", "fp32")]
    reasons: list[str] = []
    for name, prec in dict.fromkeys(candidates):   # ordered, without repeats
        engine, why = _try_build(name, prec, model, device, buckets, cache, force_rebuild, self_check_mm)
        if engine is not None:
            if reasons:
                engine.fallback_reason = "; ".join(reasons)
                log.warning("Using %s %s instead of %s %s: %s", name, prec, backend, precision,
                            engine.fallback_reason)
            return engine
        reasons.append(f"{name} {prec}: {why}")
    raise AssertionError("fp32 eager cannot fail")   # pragma: no cover


def _try_build(name: str, precision: str, model: HaMeR, device: torch.device, buckets: tuple[int, ...],
               cache: Path, force_rebuild: bool, bound_mm: float) -> tuple[Engine | None, str]:
    try:
        engine = BUILDERS[name](model, precision, device, buckets, cache_dir=cache, force_rebuild=force_rebuild)
    except BackendUnavailable as e:
        log.warning("Inference backend %s unavailable: %s", name, e)
        return None, f"unavailable ({e})"
    except Exception as e:   # a failed compile or engine build must not take the node down
        log.warning("Inference backend %s %s failed to build: %s: %s", name, precision, type(e).__name__, e,
                    exc_info=log.isEnabledFor(logging.DEBUG))
        return None, f"build failed ({type(e).__name__}: {e})"
    if name == "eager" and precision == "fp32":
        return engine, ""   # the reference itself
    result = check_engine(engine, model, bound_mm)
    engine.check = result
    if not result.ok:
        log.error("Refusing the %s %s engine: %s (max %.3g mm, mean %.3g mm over batches %s).", name, precision,
                  result.reason, result.max_mm, result.mean_mm, result.batches)
        return None, f"refused by the self-check ({result.reason})"
    log.info("%s %s engine passed the self-check: vertex error max %.3g mm, mean %.3g mm (bound %g mm).",
             name, precision, result.max_mm, result.mean_mm, bound_mm)
    return engine, ""


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device
