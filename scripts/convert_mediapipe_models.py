"""Converts MediaPipe's palm detector and hand landmark model (.tflite) into the .npz files that
hamer_ros.perception.hand_models runs with PyTorch, so the runtime needs neither mediapipe nor
TensorFlow.

    python scripts/convert_mediapipe_models.py                    # from the installed mediapipe 0.10.x
    python scripts/convert_mediapipe_models.py --palm P.tflite --landmark L.tflite --version 0.10.21

Needs the `tflite` package (a flatbuffer reader, pip install tflite) at conversion time only.
Each .npz holds:
  - one float16 array per weight, named "w<tensor id>", in TFLite's own layout (conv OHWI,
    depthwise 1HWC, fully connected [out, in], PReLU alpha [1, 1, C]); the runtime's loader
    converts them to torch's layout in one place. The models store their weights as float16
    (DEQUANTIZE ops feed them to the float32 graph), so float16 here loses nothing; a float32
    weight that float16 cannot hold exactly is refused rather than rounded silently.
  - "__topology__": JSON, the op list (type, input / output tensor ids, options, small int
    constants such as PAD's paddings inlined) and the graph's input / output ids and shapes.
  - "__meta__": JSON, the source file name, its sha256, the mediapipe wheel version, the licence.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "hamer_ros" / "perception" / "hand_models"
MODELS = {  # output name -> path inside the mediapipe package
    "palm_detection_full": "modules/palm_detection/palm_detection_full.tflite",
    "hand_landmark_full": "modules/hand_landmark/hand_landmark_full.tflite",
}
TOPOLOGY_FORMAT = 1
# The ops the runtime executes (hamer_ros/perception/hand_models/graph.py); anything else is refused
# here, at conversion time, not discovered at inference.
SUPPORTED = {"CONV_2D", "DEPTHWISE_CONV_2D", "PRELU", "ADD", "MAX_POOL_2D", "PAD", "RESIZE_BILINEAR",
             "RESHAPE", "CONCATENATION", "MEAN", "FULLY_CONNECTED", "LOGISTIC"}
_ACTIVATIONS = {0: None, 1: "relu", 3: "relu6"}     # tflite ActivationFunctionType
_PADDING = {0: "same", 1: "valid"}                  # tflite Padding


def _enum_names(enum_cls: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_")}


def _options(op, name: str) -> dict:
    """The op's builtin options as a plain dict of the fields the runtime reads."""
    import tflite

    def table(cls):
        o = cls()
        raw = op.BuiltinOptions()
        o.Init(raw.Bytes, raw.Pos)
        return o

    def act(code: int):
        if code not in _ACTIVATIONS:
            raise ValueError(f"{name}: fused activation {code} not supported")
        return _ACTIVATIONS[code]

    if name == "CONV_2D":
        o = table(tflite.Conv2DOptions)
        return {"stride": [o.StrideH(), o.StrideW()], "dilation": [o.DilationHFactor(), o.DilationWFactor()],
                "padding": _PADDING[o.Padding()], "activation": act(o.FusedActivationFunction())}
    if name == "DEPTHWISE_CONV_2D":
        o = table(tflite.DepthwiseConv2DOptions)
        return {"stride": [o.StrideH(), o.StrideW()], "dilation": [o.DilationHFactor(), o.DilationWFactor()],
                "padding": _PADDING[o.Padding()], "activation": act(o.FusedActivationFunction()),
                "depth_multiplier": o.DepthMultiplier()}
    if name == "MAX_POOL_2D":
        o = table(tflite.Pool2DOptions)
        return {"stride": [o.StrideH(), o.StrideW()], "kernel": [o.FilterHeight(), o.FilterWidth()],
                "padding": _PADDING[o.Padding()], "activation": act(o.FusedActivationFunction())}
    if name == "ADD":
        return {"activation": act(table(tflite.AddOptions).FusedActivationFunction())}
    if name == "CONCATENATION":
        o = table(tflite.ConcatenationOptions)
        return {"axis": o.Axis(), "activation": act(o.FusedActivationFunction())}
    if name == "RESIZE_BILINEAR":
        o = table(tflite.ResizeBilinearOptions)
        return {"align_corners": bool(o.AlignCorners()), "half_pixel_centers": bool(o.HalfPixelCenters())}
    if name == "MEAN":
        return {"keep_dims": bool(table(tflite.ReducerOptions).KeepDims())}
    if name == "FULLY_CONNECTED":
        o = table(tflite.FullyConnectedOptions)
        if o.WeightsFormat() != 0:
            raise ValueError("FULLY_CONNECTED: only the default weights format is supported")
        return {"activation": act(o.FusedActivationFunction()), "keep_num_dims": bool(o.KeepNumDims())}
    return {}


def convert(tflite_path: Path, out_path: Path, wheel_version: str) -> dict:
    """Reads one .tflite model and writes its .npz; returns a short summary."""
    import tflite
    from tflite.BuiltinOperator import BuiltinOperator
    from tflite.TensorType import TensorType

    data = tflite_path.read_bytes()
    model = tflite.Model.GetRootAsModel(data, 0)
    if model.SubgraphsLength() != 1:
        raise ValueError(f"{tflite_path}: expected one subgraph, found {model.SubgraphsLength()}")
    graph = model.Subgraphs(0)
    op_names = _enum_names(BuiltinOperator)
    type_names = _enum_names(TensorType)

    def shape(tid: int) -> list[int]:
        t = graph.Tensors(tid)
        return t.ShapeAsNumpy().tolist() if t.ShapeLength() else []

    def constant(tid: int) -> np.ndarray | None:
        t = graph.Tensors(tid)
        buf = model.Buffers(t.Buffer())
        if buf.DataLength() == 0:
            return None
        dtype = {"FLOAT16": np.float16, "FLOAT32": np.float32, "INT32": np.int32, "INT64": np.int64}
        kind = type_names[t.Type()]
        if kind not in dtype:
            raise ValueError(f"tensor {tid}: constant of type {kind} not supported")
        return np.frombuffer(buf.DataAsNumpy().tobytes(), dtype=dtype[kind]).reshape(shape(tid))

    weights: dict[str, np.ndarray] = {}
    dequantized: dict[int, np.ndarray] = {}   # float32 tensor id -> its float16 source
    ops = []
    counts: dict[str, int] = {}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        # Newer converters put builtin codes >= 127 in BuiltinCode and keep the deprecated byte.
        name = op_names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        ins = [op.Inputs(j) for j in range(op.InputsLength())]
        outs = [op.Outputs(j) for j in range(op.OutputsLength())]
        if name == "DEQUANTIZE":
            src = constant(ins[0])
            if src is None or src.dtype != np.float16:
                raise ValueError(f"op {i}: DEQUANTIZE of a non-constant or non-float16 tensor")
            dequantized[outs[0]] = src
            continue
        if name not in SUPPORTED:
            raise ValueError(f"op {i}: {name} is not supported by the runtime")
        counts[name] = counts.get(name, 0) + 1
        entry = {"type": name, "inputs": [], "outputs": outs, "weights": [], "options": _options(op, name)}
        for tid in ins:
            if tid < 0:                      # optional input left out (e.g. no bias)
                entry["weights"].append(None)
                continue
            if tid in dequantized:
                key = f"w{tid}"
                weights[key] = dequantized[tid]
                entry["weights"].append(key)
                continue
            const = constant(tid)
            if const is None:
                entry["inputs"].append(tid)
            elif const.dtype.kind == "f":
                half = const.astype(np.float16)
                if not np.array_equal(half.astype(const.dtype), const):
                    raise ValueError(f"op {i}: float32 weight {tid} is not exactly representable in float16")
                key = f"w{tid}"
                weights[key] = half
                entry["weights"].append(key)
            else:
                # Small int constants (PAD paddings, RESHAPE shape, RESIZE size, MEAN axes) go in
                # the topology itself: they describe the graph, they are not weights.
                entry["options"]["const"] = const.tolist()
        ops.append(entry)

    inputs = [graph.Inputs(j) for j in range(graph.InputsLength())]
    outputs = [graph.Outputs(j) for j in range(graph.OutputsLength())]
    topology = {
        "format": TOPOLOGY_FORMAT,
        "inputs": inputs, "outputs": outputs,
        "input_shapes": [shape(t) for t in inputs], "output_shapes": [shape(t) for t in outputs],
        "output_names": [graph.Tensors(t).Name().decode() for t in outputs],
        "ops": ops,
    }
    meta = {
        "source_file": tflite_path.name,
        "source_sha256": hashlib.sha256(data).hexdigest(),
        "mediapipe_version": wheel_version,
        "licence": "Apache-2.0 (Google MediaPipe); see NOTICE.md beside this file",
        "converter": "scripts/convert_mediapipe_models.py",
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # Plain str arrays (numpy unicode), so loading needs no pickle.
    np.savez_compressed(out_path, __topology__=np.array(json.dumps(topology)),
                        __meta__=np.array(json.dumps(meta)), **weights)
    return {"file": str(out_path), "bytes": out_path.stat().st_size, "weights": len(weights),
            "parameters": int(sum(w.size for w in weights.values())), "ops": counts, **meta}


def mediapipe_dir() -> Path:
    spec = importlib.util.find_spec("mediapipe")   # found, not imported: importing it is slow
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("mediapipe is not installed; pass --palm and --landmark (and --version)")
    return Path(list(spec.submodule_search_locations)[0])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--palm", type=Path, help="palm_detection_full.tflite (default: the installed mediapipe's)")
    ap.add_argument("--landmark", type=Path, help="hand_landmark_full.tflite (default: the installed mediapipe's)")
    ap.add_argument("--version", help="the mediapipe wheel version the files came from (default: installed)")
    ap.add_argument("--out", type=Path, default=OUT_DIR, help=f"output folder (default {OUT_DIR})")
    args = ap.parse_args(argv)

    paths = {"palm_detection_full": args.palm, "hand_landmark_full": args.landmark}
    if any(p is None for p in paths.values()):
        base = mediapipe_dir()
        for key, rel in MODELS.items():
            paths[key] = paths[key] or base / rel
    version = args.version
    if version is None:
        try:
            version = importlib.metadata.version("mediapipe")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
    if not version.startswith("0.10."):
        print(f"warning: mediapipe {version}: these models were checked against 0.10.21", file=sys.stderr)
    for key, path in paths.items():
        if not path.is_file():
            raise SystemExit(f"{path}: not found (mediapipe 1.x wheels no longer ship the models)")
        summary = convert(path, args.out / f"{key}.npz", version)
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
