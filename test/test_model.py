import math
import os
import pickle
from pathlib import Path

import pytest
import torch

from hamer_ros.model import (CheckpointError, HaMeR, HaMeRConfig, ManoLayer, UnsafeCheckpointError,
                             rot6d_to_rotmat)
from hamer_ros.model.checkpoint import IGNORED_PREFIXES, to_our_key
from hamer_ros_testing import synthetic_reference_state_dict, write_checkpoint

# The reference's state-dict listing (made by this project from the reference code; see its header).
TSV = Path(__file__).resolve().parent / "data" / "hamer-state-dict.tsv"


def crops(b: int, size: int = 256) -> torch.Tensor:
    return torch.randn(b, 3, size, size, generator=torch.Generator().manual_seed(b))


def test_tiny_forward_shapes(tiny_model):
    out = tiny_model(crops(3))
    shapes = {k: tuple(v.shape) for k, v in out._asdict().items()}
    assert shapes == {"vertices": (3, 778, 3), "joints": (3, 21, 3), "keypoints_2d": (3, 21, 2),
                      "cam": (3, 3), "global_orient": (3, 3, 3), "hand_pose": (3, 15, 3, 3),
                      "betas": (3, 10), "cam_t": (3, 3)}
    assert all(torch.isfinite(v).all() for v in out)
    assert tiny_model.cfg.grid == (16, 12)


def test_default_state_dict_matches_reference_listing():
    """Every one of the reference's 563 entries is either loaded (same shape) or deliberately
    ignored, and every weight of ours comes from one of them."""
    rows = [line.rstrip("\n").split("\t") for line in TSV.read_text().splitlines()
            if line and not line.startswith(("#", "index"))]
    assert len(rows) == 563
    with torch.device("meta"):
        model = HaMeR(HaMeRConfig(), torch.nn.Identity())
    ours = {k: tuple(v.shape) for k, v in model.network_state_dict().items()}
    covered, ignored = set(), []
    for _, key, shape, _dtype, _kind in rows:
        new = to_our_key(key)
        if new is None:
            assert key.startswith(IGNORED_PREFIXES)
            ignored.append(key)
            continue
        want = () if shape == "scalar" else tuple(int(s) for s in shape.split("x"))
        assert ours[new] == want, key
        covered.add(new)
    assert covered == set(ours)
    assert len(covered) == 503 and len(ignored) == 60
    assert sum(math.prod(s) for s in ours.values()) == 630_912_000 + 39_497_837 + 96 + 10 + 3  # + init_* buffers


def _spec_forward(sd: dict, cfg: HaMeRConfig, x: torch.Tensor) -> tuple:
    """The network written directly from the reference spec on reference-named tensors: scale q
    before the product in the ViT, after it in the head; [q|k|v] head-major; [k|v] for to_kv."""
    import torch.nn.functional as F

    def lin(t, name, bias=True):
        return F.linear(t, sd[name + ".weight"], sd.get(name + ".bias") if bias else None)

    def ln(t, name, eps):
        return F.layer_norm(t, t.shape[-1:], sd[name + ".weight"], sd[name + ".bias"], eps)

    x = x[:, :, :, 32:-32]
    x = F.conv2d(x, sd["backbone.patch_embed.proj.weight"], sd["backbone.patch_embed.proj.bias"], stride=16, padding=2)
    b = x.shape[0]
    x = x.flatten(2).transpose(1, 2)
    pe = sd["backbone.pos_embed"]
    x = x + pe[:, 1:] + pe[:, :1]
    h = cfg.num_heads
    for i in range(cfg.depth):
        p = f"backbone.blocks.{i}."
        y = ln(x, p + "norm1", 1e-6)
        qkv = lin(y, p + "attn.qkv").reshape(b, x.shape[1], 3, h, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * qkv.shape[-1] ** -0.5, qkv[1], qkv[2]
        a = (q @ k.transpose(-2, -1)).softmax(-1) @ v
        x = x + lin(a.transpose(1, 2).reshape(b, x.shape[1], -1), p + "attn.proj")
        x = x + lin(F.gelu(lin(ln(x, p + "norm2", 1e-6), p + "mlp.fc1")), p + "mlp.fc2")
    ctx = ln(x, "backbone.last_norm", 1e-6)
    t = lin(torch.zeros(b, 1, 1), "mano_head.transformer.to_token_embedding") + sd["mano_head.transformer.pos_embedding"]
    hh, dh = cfg.head_heads, cfg.head_dim_head

    def heads(z):
        return z.reshape(z.shape[0], z.shape[1], hh, dh).transpose(1, 2)

    def attend(q, k, v):
        return ((q @ k.transpose(-2, -1)) * dh ** -0.5).softmax(-1) @ v

    for l in range(cfg.head_depth):
        p = f"mano_head.transformer.transformer.layers.{l}."
        q, k, v = lin(ln(t, p + "0.norm", 1e-5), p + "0.fn.to_qkv", bias=False).chunk(3, -1)
        t = t + lin(attend(heads(q), heads(k), heads(v)).transpose(1, 2).reshape(b, 1, -1), p + "0.fn.to_out.0")
        q = lin(ln(t, p + "1.norm", 1e-5), p + "1.fn.to_q", bias=False)
        k, v = lin(ctx, p + "1.fn.to_kv", bias=False).chunk(2, -1)
        t = t + lin(attend(heads(q), heads(k), heads(v)).transpose(1, 2).reshape(b, 1, -1), p + "1.fn.to_out.0")
        y = ln(t, p + "2.norm", 1e-5)
        t = t + lin(F.gelu(lin(y, p + "2.fn.net.0")), p + "2.fn.net.3")
    t = t[:, 0]
    pose = lin(t, "mano_head.decpose") + sd["mano_head.init_hand_pose"]
    betas = lin(t, "mano_head.decshape") + sd["mano_head.init_betas"]
    cam = lin(t, "mano_head.deccam") + sd["mano_head.init_cam"]
    return pose, betas, cam


def test_network_matches_spec_written_forward(tiny_model):
    cfg = tiny_model.cfg
    sd = synthetic_reference_state_dict(tiny_model)
    x = crops(2)
    with torch.no_grad():
        pose, betas, cam = _spec_forward(sd, cfg, x)
        ours = tiny_model.decode(x)
    torch.testing.assert_close(ours[0].reshape(2, -1), pose, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours[1], betas, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours[2], cam, atol=1e-5, rtol=1e-5)


def test_rot6d_properties():
    x = torch.randn(1000, 6, generator=torch.Generator().manual_seed(1))
    r = rot6d_to_rotmat(x)
    eye = torch.eye(3).expand_as(r)
    torch.testing.assert_close(r.transpose(-1, -2) @ r, eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(1000), atol=1e-5, rtol=0)
    # first column is the normalised first 3-vector; second lies in the span of both
    torch.testing.assert_close(r[..., 0], x[:, :3] / x[:, :3].norm(dim=-1, keepdim=True))
    n = torch.linalg.cross(x[:, :3], x[:, 3:], dim=-1)
    assert (r[..., 1] * n).sum(-1).abs().max() < 1e-4 * n.norm(dim=-1).max()
    torch.testing.assert_close(rot6d_to_rotmat(torch.tensor([1.0, 0, 0, 0, 1, 0])), torch.eye(3))
    # the official mean global orientation: a near-degenerate pair → 90° about x
    mean = torch.tensor([1.0, 0.0, 0.0, -1.0000005, 0.0, 1.51e-7])
    torch.testing.assert_close(rot6d_to_rotmat(mean), torch.tensor([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]))


def test_runs_under_bf16_autocast(tiny_model):
    x = crops(2)
    with torch.no_grad():
        ref = tiny_model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = tiny_model(x)
    assert low.vertices.dtype == torch.float32 and torch.isfinite(low.vertices).all()
    assert (low.vertices - ref.vertices).abs().max() < 0.01   # random weights; metres


def test_from_checkpoint_official_layout_with_foreign_config(tiny_model, tiny_checkpoint, mano_path):
    with pytest.raises(ImportError):
        import yacs  # noqa: F401  (the checkpoint pickles yacs.config.CfgNode; yacs is absent)
    assert b"yacs.config" in tiny_checkpoint.read_bytes()   # torch.save stores data.pkl uncompressed
    model = HaMeR.from_checkpoint(tiny_checkpoint, mano_path.parent, device="cpu")
    assert model.cfg == tiny_model.cfg
    x = crops(2)
    with torch.no_grad():
        a, b = model(x), tiny_model(x)
    for name in a._fields:
        torch.testing.assert_close(getattr(a, name), getattr(b, name), atol=0, rtol=0)
    assert "yacs" not in __import__("sys").modules


def test_checkpoint_missing_config_and_file(tmp_path, mano_path, tiny_checkpoint):
    with pytest.raises(CheckpointError, match="hamer.ckpt"):
        HaMeR.from_checkpoint(tmp_path / "checkpoints" / "hamer.ckpt", mano_path)
    lone = tmp_path / "x" / "hamer.ckpt"
    lone.parent.mkdir()
    lone.write_bytes(tiny_checkpoint.read_bytes())
    with pytest.raises(CheckpointError, match="model_config.yaml"):
        HaMeR.from_checkpoint(lone, mano_path)
    model = HaMeR.from_checkpoint(lone, mano_path, config=HaMeRConfig.tiny())
    assert model.cfg.depth == 2


def test_corrupt_checkpoint_is_reported(tmp_path, tiny_checkpoint, mano_path):
    bad = tmp_path / "checkpoints" / "hamer.ckpt"
    bad.parent.mkdir()
    bad.write_bytes(tiny_checkpoint.read_bytes()[:3000])
    (tmp_path / "model_config.yaml").write_text((tiny_checkpoint.parent.parent / "model_config.yaml").read_text())
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        HaMeR.from_checkpoint(bad, mano_path)


def _save(tmp_path: Path, tiny_model, extra) -> Path:
    root = tmp_path / "evil"
    return write_checkpoint(root, tiny_model, extra=extra)


class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _RunsForeign:
    def __reduce__(self):
        return (pickle.loads, (b"",))


def test_code_running_payload_is_refused_and_does_not_run(tmp_path, tiny_model, mano_path):
    marker = tmp_path / "payload_ran"
    ckpt = _save(tmp_path, tiny_model, {"callbacks": _RunsShell(marker)})
    with pytest.raises(UnsafeCheckpointError, match="system"):
        HaMeR.from_checkpoint(ckpt, mano_path)
    assert not marker.exists()
    ckpt = _save(tmp_path, tiny_model, {"callbacks": _RunsForeign()})
    with pytest.raises(UnsafeCheckpointError):
        HaMeR.from_checkpoint(ckpt, mano_path)


def test_calling_an_unknown_global_is_refused(tmp_path, tiny_model, mano_path):
    from hamer_ros_testing import fake_modules

    with fake_modules(("evil.mod", "run")) as fake:
        cls = fake["evil.mod.run"]
        cls.__reduce__ = lambda self: (cls, ("rm -rf",))
        ckpt = _save(tmp_path, tiny_model, {"x": cls()})
    with pytest.raises(UnsafeCheckpointError, match="evil.mod.run"):
        HaMeR.from_checkpoint(ckpt, mano_path)


def test_strict_keys_name_missing_and_unexpected(tiny_model, mano_path):
    model = HaMeR(tiny_model.cfg, ManoLayer.from_file(mano_path))
    weights = tiny_model.network_state_dict()
    weights.pop("head.dec_cam.bias")
    weights["backbone.blocks.9.attn.qkv.weight"] = torch.zeros(1)
    weights["head.layers.0.norm1.weight"] = torch.zeros(7)
    with pytest.raises(CheckpointError) as e:
        model.load_network_state_dict(weights)
    msg = str(e.value)
    assert "head.dec_cam.bias" in msg and "backbone.blocks.9.attn.qkv.weight" in msg
    assert "head.layers.0.norm1.weight: file (7,)" in msg


def test_mano_copy_mismatch_warns(tmp_path, tiny_model, mano_path, caplog):
    sd = synthetic_reference_state_dict(tiny_model)
    sd["mano.v_template"] = sd["mano.v_template"] + 1e-3
    root = tmp_path / "c"
    write_checkpoint(root, tiny_model)
    torch.save({"state_dict": sd}, root / "checkpoints" / "hamer.ckpt")
    with caplog.at_level("WARNING"):
        HaMeR.from_checkpoint(root / "checkpoints" / "hamer.ckpt", mano_path)
    assert "v_template differs" in caplog.text


@pytest.mark.slow
def test_full_size_vit_h_forward_on_cpu(mano_path):
    torch.manual_seed(0)
    with torch.device("meta"):
        model = HaMeR(HaMeRConfig(), torch.nn.Identity())
    model = model.to_empty(device="cpu")
    for p in model.parameters():   # cheap init: full kaiming init of 670M weights takes long on 2 cores
        p.data.normal_(0, 0.02)
    for name, buf in [("init_pose", torch.tensor([1.0, 0, 0, 0, 1, 0]).repeat(16)[None]),
                      ("init_betas", torch.zeros(1, 10)), ("init_cam", torch.tensor([[4.0, 0, 0]]))]:
        getattr(model.head, name).copy_(buf)
    model.mano = ManoLayer.from_file(mano_path)
    with torch.no_grad():
        out = model.eval()(crops(1))
    assert out.vertices.shape == (1, 778, 3) and torch.isfinite(out.vertices).all()
    assert sum(p.numel() for p in model.backbone.parameters()) == 630_912_000


def test_empty_batch(tiny_model):
    out = tiny_model(torch.zeros(0, 3, 256, 256))
    assert out.vertices.shape == (0, 778, 3) and out.hand_pose.shape == (0, 15, 3, 3)


def test_checkpoint_alone_gives_the_same_meshes_as_the_mano_file(tiny_checkpoint, mano_path):
    """The official checkpoint holds MANO as smplx's buffers: without a MANO file the layer is
    built from them, and must give exactly what MANO_RIGHT.pkl gives."""
    from_pkl = HaMeR.from_checkpoint(tiny_checkpoint, mano_path, device="cpu")
    alone = HaMeR.from_checkpoint(tiny_checkpoint, device="cpu")
    for name, buf in from_pkl.mano.named_buffers():
        assert torch.equal(getattr(alone.mano, name), buf), name
    x = crops(3)
    with torch.no_grad():
        a, b = alone(x), from_pkl(x)
    for name in a._fields:
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert torch.equal(alone.mano.faces, from_pkl.mano.faces)
    empty = HaMeR.from_checkpoint(tiny_checkpoint, "", device="cpu")   # the node's and CLI's "not given"
    assert torch.equal(empty.mano.posedirs, from_pkl.mano.posedirs)


def test_checkpoint_without_usable_mano_copy_asks_for_the_file(tmp_path, tiny_model, mano_path):
    from hamer_ros.model import ManoModelError

    root = tmp_path / "c"
    ckpt = write_checkpoint(root, tiny_model)
    sd = synthetic_reference_state_dict(tiny_model)
    del sd["mano.lbs_weights"]
    sd["mano.shapedirs"] = sd["mano.shapedirs"][..., :5]
    torch.save({"state_dict": sd}, ckpt)
    with pytest.raises(ManoModelError) as e:
        HaMeR.from_checkpoint(ckpt)
    msg = str(e.value)
    assert "lbs_weights missing" in msg and "shapedirs is (778, 3, 5)" in msg and "MANO_RIGHT.pkl" in msg
    assert HaMeR.from_checkpoint(ckpt, mano_path).mano.lbs_weights.shape == (778, 16)   # the file still works


def test_loading_spends_no_random_numbers_and_leaves_nothing_on_meta(tiny_checkpoint, tiny_model):
    """The network is built on the meta device and takes the checkpoint's tensors: a random
    initialisation on the CPU would advance the global generator."""
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    model = HaMeR.from_checkpoint(tiny_checkpoint)
    assert torch.equal(torch.random.get_rng_state(), before)
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    assert all(t.device.type == "cpu" for t in tensors.values())
    assert all(p.requires_grad for p in model.parameters())   # still Parameters, as built
    for k, v in tiny_model.network_state_dict().items():
        assert torch.equal(model.network_state_dict()[k], v), k
