"""A TFLite graph, recorded by scripts/convert_mediapipe_models.py, executed as torch modules.

The .npz keeps the op list and the weights in TFLite's layout; `load_graph` turns them into a
`TfliteGraph`. Inside, 4-D activations are indexed NCHW (torch's layout; stored channels_last,
i.e. NHWC in memory, for speed); the ops whose meaning depends on the layout (PAD, RESHAPE,
CONCATENATION, MEAN, FULLY_CONNECTED of a feature map) translate their NHWC arguments, and
`_torch_weight` is the one place weights change layout.

TFLite semantics kept exactly: SAME padding puts the odd pixel of padding after (right / bottom),
so a stride-2 5x5 conv on an even input pads (1, 2), not torch's symmetric (2, 2); RESIZE_BILINEAR
follows the model's align_corners / half_pixel_centers flags.
"""
from __future__ import annotations

import json
import math
import zipfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TFLite/TensorFlow SAME: output ceil(size / stride); the extra pixel, if any, goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _activate(x: torch.Tensor, activation: str | None) -> torch.Tensor:
    if activation is None:
        return x
    if activation == "relu":
        return F.relu(x)
    if activation == "relu6":
        return F.hardtanh(x, 0.0, 6.0)
    raise ValueError(f"unknown activation {activation!r}")


class _SamePad(nn.Module):
    """Pads a NCHW input as TFLite's SAME would, for the given kernel / stride / dilation. The pads
    depend on the input size only, so they are computed per call (a few integer operations)."""

    def __init__(self, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int], value: float):
        super().__init__()
        self.kernel, self.stride, self.dilation, self.value = tuple(kernel), tuple(stride), tuple(dilation), value

    def pads(self, height: int, width: int) -> tuple[int, int, int, int]:
        top, bottom = _same_padding(height, self.kernel[0], self.stride[0], self.dilation[0])
        left, right = _same_padding(width, self.kernel[1], self.stride[1], self.dilation[1])
        return left, right, top, bottom

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = self.pads(x.shape[2], x.shape[3])
        return F.pad(x, pads, value=self.value) if any(pads) else x


class Conv(nn.Module):
    """CONV_2D and DEPTHWISE_CONV_2D (groups = channels), SAME or VALID, with fused activation."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, groups: int, options: dict):
        super().__init__()
        out_ch, in_per_group, kh, kw = weight.shape
        self.conv = nn.Conv2d(in_per_group * groups, out_ch, (kh, kw), stride=tuple(options["stride"]),
                              dilation=tuple(options["dilation"]), groups=groups, bias=bias is not None)
        with torch.no_grad():
            self.conv.weight.copy_(weight)
            if bias is not None:
                self.conv.bias.copy_(bias)
        self.activation = options["activation"]
        self.pad = None
        if options["padding"] == "same":
            self.pad = _SamePad((kh, kw), options["stride"], options["dilation"], 0.0)
            # Symmetric SAME padding (all stride-1 convs here) is folded into the conv itself.
            if all(k % 2 == 1 for k in (kh, kw)) and tuple(options["stride"]) == (1, 1):
                self.conv.padding = ((kh - 1) // 2 * options["dilation"][0], (kw - 1) // 2 * options["dilation"][1])
                self.pad = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            x = self.pad(x)
        return _activate(self.conv(x), self.activation)


class PRelu(nn.Module):
    def __init__(self, alpha: torch.Tensor):
        super().__init__()
        self.alpha = nn.Parameter(alpha.reshape(-1), requires_grad=False)     # one slope per channel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.prelu(x, self.alpha)        # x >= 0 ? x : alpha x, as TFLite's PRELU


class MaxPool(nn.Module):
    def __init__(self, options: dict):
        super().__init__()
        self.kernel, self.stride = tuple(options["kernel"]), tuple(options["stride"])
        # SAME max pooling pads with -inf: padding never wins the max.
        self.pad = (_SamePad(self.kernel, self.stride, (1, 1), -math.inf)
                    if options["padding"] == "same" else None)
        self.activation = options["activation"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            x = self.pad(x)
        return _activate(F.max_pool2d(x, self.kernel, self.stride), self.activation)


class ResizeBilinear(nn.Module):
    def __init__(self, options: dict):
        super().__init__()
        self.size = tuple(options["const"])
        self.align_corners = options["align_corners"]
        self.half_pixel = options["half_pixel_centers"]
        if self.align_corners and self.half_pixel:
            raise ValueError("RESIZE_BILINEAR: align_corners and half_pixel_centers together are invalid")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.align_corners or self.half_pixel:
            # torch's align_corners=False is TF's half_pixel_centers (source clamped at 0 alike).
            return F.interpolate(x, size=self.size, mode="bilinear", align_corners=self.align_corners)
        return _legacy_resize(x, self.size)


def _legacy_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TF1 bilinear resize (neither flag): source = dst * in / out, no half-pixel shift."""
    def axis(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        src = torch.arange(n_out, dtype=torch.float32, device=x.device) * (n_in / n_out)
        lo = src.floor().long().clamp(max=n_in - 1)
        return lo, (lo + 1).clamp(max=n_in - 1), src - lo
    y0, y1, wy = axis(x.shape[2], size[0])
    x0, x1, wx = axis(x.shape[3], size[1])
    top = x[:, :, y0] * (1 - wy)[:, None] + x[:, :, y1] * wy[:, None]
    return top[..., x0] * (1 - wx) + top[..., x1] * wx


def _to_nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1) if x.dim() == 4 else x


class Reshape(nn.Module):
    def __init__(self, options: dict):
        super().__init__()
        self.shape = [int(s) for s in options["const"]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The recorded shape has batch 1; the batch of this call takes its place.
        out = _to_nhwc(x).reshape([x.shape[0], *self.shape[1:]])
        return out.permute(0, 3, 1, 2) if out.dim() == 4 else out


class Concat(nn.Module):
    def __init__(self, options: dict, rank: int):
        super().__init__()
        axis = options["axis"] % rank
        self.axis = _NHWC_TO_NCHW_AXIS[axis] if rank == 4 else axis
        self.activation = options["activation"]

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return _activate(torch.cat(xs, self.axis), self.activation)


class Mean(nn.Module):
    def __init__(self, options: dict, rank: int):
        super().__init__()
        axes = [a % rank for a in options["const"]]
        self.axes = sorted(_NHWC_TO_NCHW_AXIS[a] for a in axes) if rank == 4 else axes
        self.keep_dims = options["keep_dims"]
        if rank == 4 and self.keep_dims:
            raise ValueError("MEAN with keep_dims on a feature map is not supported")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=self.axes, keepdim=self.keep_dims)


class FullyConnected(nn.Module):
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, options: dict):
        super().__init__()
        self.linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            if bias is not None:
                self.linear.bias.copy_(bias)
        self.activation = options["activation"]
        if options["keep_num_dims"]:
            raise ValueError("FULLY_CONNECTED with keep_num_dims is not supported")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # TFLite flattens everything but the last axis into rows: NHWC order for a feature map.
        x = _to_nhwc(x).reshape(x.shape[0], -1)
        return _activate(self.linear(x), self.activation)


class Add(nn.Module):
    def __init__(self, options: dict):
        super().__init__()
        self.activation = options["activation"]

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return _activate(a + b, self.activation)


class Pad(nn.Module):
    def __init__(self, options: dict):
        super().__init__()
        p = options["const"]                     # [[before, after]] per NHWC axis
        if len(p) != 4 or p[0] != [0, 0]:
            raise ValueError(f"PAD: only feature-map padding is supported, got {p}")
        # F.pad lists the last axis first: W, H, C of NCHW.
        self.pads = (p[2][0], p[2][1], p[1][0], p[1][1], p[3][0], p[3][1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.pads)


def _torch_weight(kind: str, array: np.ndarray) -> torch.Tensor:
    """TFLite layout -> torch layout, float16 -> float32: the only place weights change layout."""
    t = torch.from_numpy(np.asarray(array, dtype=np.float32))
    if t.dim() != 4:                     # biases [C], FC [out, in], PReLU alpha [1, 1, C]
        return t.contiguous()
    if kind == "CONV_2D":                # O H W I -> O I H W
        return t.permute(0, 3, 1, 2).contiguous()
    if kind == "DEPTHWISE_CONV_2D":      # 1 H W C -> C 1 H W
        return t.permute(3, 0, 1, 2).contiguous()
    raise ValueError(f"{kind}: unexpected 4-D weight")


def _build_op(op: dict, weights: list[torch.Tensor | None], ranks: dict[int, int]) -> nn.Module:
    kind, options = op["type"], op["options"]
    rank = ranks.get(op["inputs"][0], 4) if op["inputs"] else 4
    if kind == "CONV_2D":
        return Conv(weights[0], weights[1] if len(weights) > 1 else None, 1, options)
    if kind == "DEPTHWISE_CONV_2D":
        if options["depth_multiplier"] != 1:
            raise ValueError("DEPTHWISE_CONV_2D: only depth multiplier 1 is supported")
        return Conv(weights[0], weights[1] if len(weights) > 1 else None, weights[0].shape[0], options)
    if kind == "PRELU":
        return PRelu(weights[0])
    if kind == "ADD":
        return Add(options)
    if kind == "MAX_POOL_2D":
        return MaxPool(options)
    if kind == "PAD":
        return Pad(options)
    if kind == "RESIZE_BILINEAR":
        return ResizeBilinear(options)
    if kind == "RESHAPE":
        return Reshape(options)
    if kind == "CONCATENATION":
        return Concat(options, rank)
    if kind == "MEAN":
        return Mean(options, rank)
    if kind == "FULLY_CONNECTED":
        return FullyConnected(weights[0], weights[1] if len(weights) > 1 else None, options)
    if kind == "LOGISTIC":
        return nn.Sigmoid()
    raise ValueError(f"op {kind} is not supported")


class TfliteGraph(nn.Module):
    """The recorded op list as modules. forward: NCHW float input -> the model's outputs, in the
    TFLite graph's output order; the batch may be any size (the recorded one is 1)."""

    def __init__(self, topology: dict, weights: dict[str, np.ndarray]):
        super().__init__()
        if len(topology["inputs"]) != 1:
            raise ValueError("only single-input graphs are supported")
        self.input_id = topology["inputs"][0]
        self.output_ids = list(topology["outputs"])
        self.input_shape = tuple(topology["input_shapes"][0])     # NHWC, as recorded
        ranks = {self.input_id: len(self.input_shape)}
        self.ops = nn.ModuleList()
        self.wiring: list[tuple[list[int], int]] = []
        for op in topology["ops"]:
            w = [None if k is None else _torch_weight(op["type"], weights[k]) for k in op["weights"]]
            self.ops.append(_build_op(op, w, ranks))
            if len(op["outputs"]) != 1:
                raise ValueError(f"{op['type']}: one output expected")
            self.wiring.append((list(op["inputs"]), op["outputs"][0]))
            # Only RESHAPE, MEAN and FULLY_CONNECTED change rank; the rest keep their input's.
            ranks[op["outputs"][0]] = (len(op["options"]["const"]) if op["type"] == "RESHAPE"
                                       else 2 if op["type"] in ("MEAN", "FULLY_CONNECTED")
                                       else ranks.get(op["inputs"][0], 4))
        self.eval()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # channels_last (NHWC in memory) runs these depthwise / 1x1 convs ~1.3-2x faster on CPU
        # than plain NCHW (measured on 2 cores); the weights are converted once in load_graph.
        values: dict[int, torch.Tensor] = {self.input_id: x.contiguous(memory_format=torch.channels_last)}
        for module, (ins, out) in zip(self.ops, self.wiring):
            values[out] = module(*(values[i] for i in ins))
        return tuple(values[i] for i in self.output_ids)


def read_npz(path: str | Path) -> tuple[dict, dict, dict[str, np.ndarray]]:
    """(topology, meta, weights) of a converted model; plain arrays only (no pickle)."""
    with np.load(Path(path), allow_pickle=False) as z:
        topology = json.loads(str(z["__topology__"]))
        meta = json.loads(str(z["__meta__"]))
        weights = {k: z[k] for k in z.files if not k.startswith("__")}
    return topology, meta, weights


def load_graph(path: str | Path, device: str | torch.device = "cpu") -> TfliteGraph:
    """HandModelError when the file cannot be read as a converted model (truncated, another file)."""
    from .runtime import RESTORE_HINT, HandModelError

    try:
        topology, meta, weights = read_npz(path)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise HandModelError(f"hand model {path} is unreadable ({type(e).__name__}: {e}); {RESTORE_HINT}") from None
    graph = TfliteGraph(topology, weights).to(device=device, memory_format=torch.channels_last)
    graph.meta: dict[str, Any] = meta
    for p in graph.parameters():
        p.requires_grad_(False)
    return graph


def freeze(graph: TfliteGraph, batch: int = 2) -> Callable[[torch.Tensor], tuple[torch.Tensor, ...]]:
    """The graph traced and frozen by TorchScript (oneDNN then fuses each conv with its bias, add
    and activation): about 2x faster than eager on a 2-core CPU (palm 13 -> 6.5 ms, landmarks
    10.5 -> 6.3 ms), bit-identical outputs here. Valid for the recorded input size only (the SAME
    pads are baked in), any batch. torch.jit is deprecated in recent torch; if tracing fails or the
    frozen graph disagrees with the eager one, the eager graph is returned (with a warning)."""
    shape = (batch, graph.input_shape[3], graph.input_shape[1], graph.input_shape[2])
    device = next(graph.parameters()).device
    probe = torch.rand(shape, generator=torch.Generator().manual_seed(0)).to(device)
    try:
        with warnings.catch_warnings():
            # torch.jit's deprecation notice, and the tracer's note that the pads become constants
            warnings.simplefilter("ignore")
            with torch.inference_mode():
                frozen = torch.jit.freeze(torch.jit.trace(graph, probe[:1], check_trace=False).eval())
                # TorchScript's profiling executor specialises over the first calls of each input
                # shape: make them here, for one and for two hands, not on the first frames.
                for _ in range(3):
                    frozen(probe[:1])
                    got = frozen(probe)
                expected = graph(probe)
        if all(e.shape == g.shape and torch.allclose(e, g, atol=1e-4, rtol=1e-4) for e, g in zip(expected, got)):
            return frozen
        warnings.warn("hand_models: the frozen TorchScript graph disagrees with the eager one; running eager")
    except Exception as e:  # noqa: BLE001 - any failure of the optional speed-up falls back to eager
        warnings.warn(f"hand_models: TorchScript freezing failed ({type(e).__name__}: {e}); running eager")
    return graph
