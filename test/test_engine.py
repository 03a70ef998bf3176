"""Inference engines: export paths, precision islands, cache key, self-check, fallbacks.

CPU tests run everywhere; GPU/TensorRT tests skip with the reason when those are absent.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hamer_ros.model import HaMeR
from hamer_ros.perception import engine as E
from hamer_ros.perception.engine import (CacheKey, EagerEngine, Fp32Islands, cache_key, check_engine,
                                         export_program, make_engine, weights_hash)

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
HAVE_TRT = importlib.util.find_spec("torch_tensorrt") is not None and importlib.util.find_spec("tensorrt") is not None
HAVE_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnxscript") is not None


def crops(b: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 3, 256, 256, generator=torch.Generator().manual_seed(seed))


def max_diff(a: tuple, b: tuple) -> float:
    return max(float((x.detach() - y.detach()).abs().max()) for x, y in zip(a, b))


class Perturbed(EagerEngine):
    """An engine that is subtly wrong: every 6D pose entry off by `delta`."""

    name = "compile"   # stands in for a compiled engine in make_engine

    def __init__(self, *args, delta: float = 0.05, **kwargs):
        super().__init__(*args, **kwargs)
        self.delta = delta

    def _forward(self, x):
        pose, betas, cam = super()._forward(x)
        return pose + self.delta, betas, cam


class Spy(EagerEngine):
    """Eager with the static-shape bucketing of compiled backends; records each forward's batch."""

    pad_to_buckets = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: list[int] = []

    @property
    def max_batch(self):
        return max(self.buckets)

    def _forward(self, x):
        self.seen.append(x.shape[0])
        return super()._forward(x)


# ----------------------------------------------------------------------------- precision islands
def test_islands_leave_fp32_bit_identical(tiny_model):
    x = crops(2)
    with torch.inference_mode():
        plain = tiny_model.decode(x)
        with Fp32Islands():
            islands = tiny_model.decode(x)
    assert all(torch.equal(a, b) for a, b in zip(plain, islands))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_islands_compute_layernorm_and_attention_in_fp32(dtype):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(2, 5, 8, generator=g) * 50).to(dtype)
    w, b = torch.randn(8, generator=g).to(dtype), torch.randn(8, generator=g).to(dtype)
    q, k, v = (torch.randn(2, 2, 5, 4, generator=g).to(dtype) for _ in range(3))
    with Fp32Islands():
        ln = F.layer_norm(x, (8,), w, b, 1e-6)
        att = F.scaled_dot_product_attention(q, k, v)
    assert ln.dtype == dtype and att.dtype == dtype
    assert torch.equal(ln, F.layer_norm(x.float(), (8,), w.float(), b.float(), 1e-6).to(dtype))
    assert torch.equal(att, F.scaled_dot_product_attention(q.float(), k.float(), v.float()).to(dtype))


def test_half_export_graph_keeps_layernorm_and_attention_in_fp32(tiny_model):
    """What a strongly typed TensorRT build sees: fp16 weights, fp32 norms and attention."""
    program = export_program(tiny_model, "fp16", max_batch=2)
    seen = {"layer_norm": 0, "scaled_dot_product": 0, "half linear": 0}
    for node in program.graph.nodes:
        target = str(node.target)
        for op in ("layer_norm", "scaled_dot_product"):
            if node.op == "call_function" and op in target:
                seen[op] += 1
                assert node.args[0].meta["val"].dtype == torch.float32, target
        if node.op == "call_function" and target == "aten.linear.default" and node.meta["val"].dtype == torch.float16:
            seen["half linear"] += 1
    cfg = tiny_model.cfg
    assert seen["layer_norm"] == 2 * cfg.depth + 1 + 3 * cfg.head_depth
    assert seen["scaled_dot_product"] == cfg.depth + 2 * cfg.head_depth
    assert seen["half linear"] > 0
    weights = [v for k, v in program.state_dict.items() if "norm" not in k and v.is_floating_point()]
    assert any(w.dtype == torch.float16 for w in weights)


def test_reduced_precision_keeps_mean_parameters_fp32(tiny_model):
    """The head's mean pose is added in fp32 (nearly degenerate mean global orientation)."""
    program = export_program(tiny_model, "fp16")
    buffers = {k: v for k, v in program.state_dict.items() if "init_" in k}
    buffers.update({k: v for k, v in program.constants.items() if "init_" in k})
    assert buffers and all(v.dtype == torch.float32 for v in buffers.values())


# ----------------------------------------------------------------------------- eager engine
def test_eager_fp32_is_the_model(tiny_model):
    engine = make_engine(tiny_model, "eager", "fp32")
    x = crops(3)
    with torch.inference_mode():
        want = tiny_model.decode(x)
    got = engine.decode(x)
    assert engine.name == "eager" and engine.precision == "fp32" and not engine.fallback_reason
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert all(t.dtype == torch.float32 for t in got)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_eager_reduced_precision_passes_self_check(tiny_model, precision):
    engine = make_engine(tiny_model, "eager", precision)
    assert (engine.name, engine.precision) == ("eager", precision)
    assert engine.check is not None and engine.check.ok and engine.check.max_mm < 0.1
    assert engine.check.batches == (1, 2)


def test_empty_batch(tiny_model):
    pose, betas, cam = make_engine(tiny_model).decode(torch.zeros(0, 3, 256, 256))
    assert pose.shape == (0, 16, 6) and betas.shape == (0, 10) and cam.shape == (0, 3)


def test_to_host_is_every_field_in_one_copy(tiny_model):
    full = make_engine(tiny_model).hands(crops(2))
    for n in (0, 2):
        out = type(full)(*(v[:n] for v in full))
        host = E.to_host(out)
        assert list(host) == list(out._fields)
        for name, value in out._asdict().items():
            assert host[name].dtype == np.float32 and host[name].shape == tuple(value.shape)
            np.testing.assert_array_equal(host[name], value.float().numpy())


def test_buckets_pad_and_split_without_changing_results(tiny_model):
    engine = Spy(tiny_model, "fp32", torch.device("cpu"), (1, 2, 4))
    x = crops(7, seed=3)
    with torch.inference_mode():
        want = tiny_model.decode(x)
    for n in (1, 2, 3, 4, 5, 7):
        engine.seen.clear()
        got = engine.decode(x[:n])
        assert all(t.shape[0] == n for t in got)
        assert set(engine.seen) <= {1, 2, 4}, engine.seen
        assert max_diff(got, tuple(t[:n] for t in want)) < 1e-5
    engine.seen.clear()
    engine.decode(x[:3])
    assert engine.seen == [4]
    engine.seen.clear()
    engine.decode(x)   # 7 = 4 + 3 (padded to 4)
    assert engine.seen == [4, 4]


def test_bad_arguments(tiny_model):
    with pytest.raises(ValueError, match="backend"):
        make_engine(tiny_model, "tvm")
    with pytest.raises(ValueError, match="precisions"):
        make_engine(tiny_model, "onnx", "fp16")
    with pytest.raises(ValueError, match="buckets"):
        make_engine(tiny_model, buckets=(0, 2))


# ----------------------------------------------------------------------------- export
def test_torch_export_dynamic_batch_matches_eager(tiny_model):
    program = export_program(tiny_model)
    module = program.module()
    for b in (1, 3):
        x = crops(b, seed=b)
        with torch.inference_mode():
            want = tiny_model.decode(x)
            got = module(x)
        assert [t.shape for t in got] == [t.shape for t in want]
        assert max_diff(got, want) < 1e-5
    (images,) = [n for n in program.graph.nodes if n.op == "placeholder" and n.name == "images"]
    batch = images.meta["val"].shape[0]
    assert isinstance(batch, torch.SymInt)   # dynamic, not specialised to the example's 2
    assert program.range_constraints[batch.node.expr].lower == 1


@pytest.mark.skipif(not HAVE_ORT, reason="onnxruntime and onnxscript not installed (pip install hamer_ros[onnx])")
def test_onnx_export_runs_in_onnxruntime_like_eager(tiny_model, tmp_path):
    import onnx

    path = E.export_onnx(tiny_model, tmp_path / "decode.onnx")
    assert E.onnx_max_error(path, tiny_model, batches=(1, 3)) < 1e-4
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["images"]
    assert [o.name for o in graph.output] == ["pose6d", "betas", "cam"]
    batch = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value   # dynamic batch for trtexec
    assert "LayerNormalization" in {n.op_type for n in graph.node}


@pytest.mark.skipif(not HAVE_ORT, reason="onnxruntime and onnxscript not installed (pip install hamer_ros[onnx])")
def test_onnx_backend_exports_once_and_reuses_the_file(tiny_model, tmp_path, caplog):
    engine = make_engine(tiny_model, "onnx", cache_dir=tmp_path)
    assert engine.name == "onnx" and engine.check.ok and engine.check.max_mm < 1e-3
    assert engine.cache_path.is_file()
    stamp = engine.cache_path.stat().st_mtime_ns
    caplog.clear()   # only the second start's records matter
    with caplog.at_level(logging.INFO, logger="hamer_ros.perception.engine"):
        again = make_engine(tiny_model, "onnx", cache_dir=tmp_path)
    assert again.cache_path == engine.cache_path and again.cache_path.stat().st_mtime_ns == stamp
    assert "ONNX export" not in caplog.text
    x = crops(3)
    assert max_diff(again.decode(x), tiny_model.decode(x)) < 1e-4


# ----------------------------------------------------------------------------- cache key
def test_cache_key_changes_when_any_input_changes(tiny_model):
    base = cache_key(tiny_model, "tensorrt", "fp16", (1, 2), torch.device("cpu"),
                     toolchain={"torch": "2.13.0", "cuda": "12.8", "torch_tensorrt": "2.13.0", "tensorrt": "10.13"})
    assert base.digest() == cache_key(tiny_model, "tensorrt", "fp16", (1, 2), torch.device("cpu"),
                                      toolchain=dict(base.toolchain)).digest()
    variants = {
        "backend": dataclasses.replace(base, backend="onnx"),
        "gpu": dataclasses.replace(base, gpu="NVIDIA H100 80GB HBM3"),
        "capability": dataclasses.replace(base, capability="9.0"),
        "precision": dataclasses.replace(base, precision="bf16"),
        "buckets": dataclasses.replace(base, buckets=(1, 2, 4)),
        "weights": dataclasses.replace(base, weights="0" * 64),
        "graph": dataclasses.replace(base, graph="1" * 64),
    }
    for name in ("torch", "cuda", "torch_tensorrt", "tensorrt"):
        tools = dict(base.toolchain)
        tools[name] += ".post1"
        variants[name] = dataclasses.replace(base, toolchain=tuple(sorted(tools.items())))
    assert {f.name for f in dataclasses.fields(CacheKey)} <= set(variants) | {"toolchain"}
    digests = {name: key.digest() for name, key in variants.items()}
    assert base.digest() not in digests.values()
    assert len(set(digests.values())) == len(digests)


def test_cache_key_follows_the_real_inputs(tiny_model):
    cpu = torch.device("cpu")
    tools = {"torch": "t", "cuda": "c", "torch_tensorrt": "tt", "tensorrt": "trt"}
    key = lambda m=tiny_model, p="fp16", b=(1, 2): cache_key(m, "tensorrt", p, b, cpu, tools)  # noqa: E731
    base = key()
    assert key(p="fp32") != base and key(b=(1, 2, 3)) != base
    other = HaMeR(dataclasses.replace(tiny_model.cfg, patch_padding=0), tiny_model.mano)
    other.load_state_dict(tiny_model.state_dict(), strict=False)
    assert key(m=other).graph != base.graph   # same weights, different program
    cache_key(tiny_model, "tensorrt", "fp16", (1, 2), cpu)   # the real toolchain lookup works without TensorRT


def test_weights_hash_sees_any_single_element(tiny_model):
    samples = 16   # fewer samples than elements, so some elements fall between them
    state = {k: v.clone() for k, v in tiny_model.network_state_dict().items()}
    h = weights_hash(state, samples)
    assert h == weights_hash({k: v.clone() for k, v in state.items()}, samples)
    assert h != weights_hash(state)   # the sample count is part of what is hashed
    name = "backbone.blocks.0.mlp.fc1.weight"
    flat = state[name].view(-1)
    sampled = set(torch.linspace(0, flat.numel() - 1, samples).long().tolist())
    i = next(j for j in range(flat.numel()) if j not in sampled)
    # one ulp on an element no sample reads: only the exact integer sum sees it
    flat[i] = torch.nextafter(flat[i], torch.tensor(float("inf")))
    assert weights_hash(state, samples) != h
    # a permutation keeps the sum; the samples see it
    flipped = {k: v.clone() for k, v in tiny_model.network_state_dict().items()}
    flipped[name] = flipped[name].flip(0)
    assert weights_hash(flipped, samples) != h
    renamed = {("x" + k if k == name else k): v for k, v in tiny_model.network_state_dict().items()}
    assert weights_hash(renamed, samples) != h


def test_load_or_build_reuses_rebuilds_and_never_leaves_partial_files(tmp_path, caplog):
    path = tmp_path / "cache" / "x.engine"
    builds: list[bytes] = []

    def build() -> bytes:
        builds.append(b"engine%d" % len(builds))
        return builds[-1]

    def load(blob: bytes) -> bytes:
        if not blob.startswith(b"engine"):
            raise RuntimeError("not an engine")
        return blob

    assert E.load_or_build(path, build, load, force_rebuild=False) == b"engine0"
    assert E.load_or_build(path, build, load, force_rebuild=False) == b"engine0" and len(builds) == 1
    assert E.load_or_build(path, build, load, force_rebuild=True) == b"engine1"
    path.write_bytes(b"garbage")   # e.g. written by another TensorRT
    with caplog.at_level(logging.WARNING, logger="hamer_ros.perception.engine"):
        assert E.load_or_build(path, build, load, force_rebuild=False) == b"engine2"
    assert "unusable" in caplog.text and path.read_bytes() == b"engine2"
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.engine"]


# ----------------------------------------------------------------------------- self-check and fallback
def test_self_check_measures_and_refuses_a_perturbed_engine(tiny_model):
    bad = Perturbed(tiny_model, "fp32", torch.device("cpu"), (1, 2))
    result = check_engine(bad, tiny_model, bound_mm=1.0)
    assert not result.ok and result.max_mm > 1.0 and "exceeds" in result.reason
    assert set(result.per_batch_max_mm) == {1, 2}
    slight = Perturbed(tiny_model, "fp32", torch.device("cpu"), (1, 2), delta=1e-7)
    assert check_engine(slight, tiny_model, bound_mm=1.0).ok


def test_make_engine_refuses_perturbed_engine_and_falls_back_to_eager(tiny_model, monkeypatch, caplog):
    monkeypatch.setitem(E.BUILDERS, "compile",
                        lambda model, precision, device, buckets, **_: Perturbed(model, precision, device, buckets))
    with caplog.at_level(logging.INFO, logger="hamer_ros.perception.engine"):
        engine = make_engine(tiny_model, "compile", "fp32", self_check_mm=1.0)
    assert type(engine) is EagerEngine and engine.precision == "fp32"
    assert "refused by the self-check" in engine.fallback_reason
    assert "Refusing the compile fp32 engine" in caplog.text
    x = crops(2)
    assert all(torch.equal(a, b) for a, b in zip(engine.decode(x), tiny_model.decode(x)))


def test_refused_reduced_precision_tries_eager_at_that_precision_first(tiny_model, monkeypatch):
    monkeypatch.setitem(E.BUILDERS, "compile",
                        lambda model, precision, device, buckets, **_: Perturbed(model, precision, device, buckets))
    engine = make_engine(tiny_model, "compile", "bf16")
    assert (type(engine), engine.precision) == (EagerEngine, "bf16") and engine.check.ok


def test_non_finite_engine_is_refused(tiny_model):
    nan = Perturbed(tiny_model, "fp32", torch.device("cpu"), (1,), delta=float("nan"))
    result = check_engine(nan, tiny_model)
    assert not result.ok and "non-finite" in result.reason


def test_build_failure_falls_back_with_reason(tiny_model, monkeypatch):
    def broken(*_, **__):
        raise RuntimeError("inductor exploded")
    monkeypatch.setitem(E.BUILDERS, "compile", broken)
    engine = make_engine(tiny_model, "compile", "fp32")
    assert type(engine) is EagerEngine and "inductor exploded" in engine.fallback_reason


@pytest.mark.skipif(CUDA, reason="checks the no-GPU fallback; this machine has a GPU")
def test_tensorrt_without_gpu_falls_back_to_eager(tiny_model, tmp_path):
    engine = make_engine(tiny_model, "tensorrt", "fp16", cache_dir=tmp_path)
    assert (engine.name, engine.precision) == ("eager", "fp16")
    assert "CUDA" in engine.fallback_reason and not list(tmp_path.iterdir())


@pytest.mark.slow
def test_compile_pads_to_buckets_and_never_recompiles(tiny_model):
    """torch.compile on the CPU (no CUDA graphs): one static graph per bucket, built up front."""
    import torch._dynamo

    torch._dynamo.reset()
    engine = make_engine(tiny_model, "compile", "fp32", buckets=(2,))
    assert engine.name == "compile", engine.fallback_reason
    x = crops(3, seed=5)
    with torch.inference_mode():
        want = tiny_model.decode(x)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for n in (1, 2, 3):
            assert max_diff(engine.decode(x[:n]), tuple(t[:n] for t in want)) < 1e-5


# ----------------------------------------------------------------------------- GPU
@needs_cuda
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_eager_reduced_precision(tiny_model, precision):
    import copy

    model = copy.deepcopy(tiny_model)
    engine = make_engine(model, "eager", precision, device="cuda")
    assert (engine.name, engine.precision) == ("eager", precision) and engine.check.ok


@needs_cuda
def test_cuda_compile_with_cuda_graphs(tiny_model):
    import copy

    import torch._dynamo

    torch._dynamo.reset()
    model = copy.deepcopy(tiny_model)
    engine = make_engine(model, "compile", "fp16", device="cuda", buckets=(1, 2))
    assert engine.name == "compile", engine.fallback_reason
    x = crops(3).cuda()
    first = [t.clone() for t in engine.decode(x[:1])]
    engine.decode(x[1:3])   # a replay of another graph must not overwrite what we returned
    again = engine.decode(x[:1])
    assert max_diff(first, again) < 1e-5
    with torch._dynamo.config.patch(error_on_recompile=True):
        for n in (1, 2, 3):
            engine.decode(x[:n])


@needs_cuda
@pytest.mark.skipif(not HAVE_TRT, reason="torch_tensorrt / tensorrt not installed")
def test_tensorrt_builds_caches_and_reloads(tiny_model, tmp_path, caplog):
    import copy

    model = copy.deepcopy(tiny_model)
    engine = make_engine(model, "tensorrt", "fp16", device="cuda", cache_dir=tmp_path)
    assert engine.name == "tensorrt", engine.fallback_reason
    assert engine.check.ok and engine.cache_path.is_file()
    x = crops(3).cuda()
    with torch.inference_mode():
        want = model.decode(x)
    assert max_diff(engine.decode(x), want) < 5e-2   # decode (chunked 2 + 1) close to fp32
    with caplog.at_level(logging.INFO, logger="hamer_ros.perception.engine"):
        again = make_engine(model, "tensorrt", "fp16", device="cuda", cache_dir=tmp_path)
    assert again.name == "tensorrt" and "Loading cached engine" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hamer_ros.perception.engine"):
        make_engine(model, "tensorrt", "fp16", device="cuda", cache_dir=tmp_path, force_rebuild=True)
    assert "Building a TensorRT engine" in caplog.text
