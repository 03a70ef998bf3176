import pickle
import sys

import numpy as np
import pytest
import torch
from smplx.lbs import lbs

from hamer_ros.model import rot6d_to_rotmat
from hamer_ros.model.mano import (FINGERTIP_VERTICES, OPENPOSE_ORDER, ManoLayer, ManoModelError,
                                  load_mano_arrays)
from hamer_ros_testing import synthetic_mano_arrays, write_synthetic_mano


def test_reads_chumpy_style_pickle_without_chumpy(mano_path):
    with pytest.raises(ImportError):
        import chumpy  # noqa: F401  (the point: it is not installed)
    blob = mano_path.read_bytes()   # the file really references chumpy and scipy's old module
    assert b"chumpy.reordering" in blob and b"scipy.sparse.csc" in blob
    arrays = load_mano_arrays(mano_path)
    ref = synthetic_mano_arrays(0)
    assert arrays["shapedirs"].shape == (778, 3, 10)
    np.testing.assert_array_equal(arrays["shapedirs"], ref["shapedirs"])
    np.testing.assert_allclose(arrays["J_regressor"], ref["J_regressor"])
    np.testing.assert_array_equal(arrays["f"], ref["f"])
    assert "chumpy" not in sys.modules and "chumpy.ch" not in sys.modules


def test_folder_is_accepted(mano_path):
    assert load_mano_arrays(mano_path.parent)["v_template"].shape == (778, 3)


def test_missing_file_names_path_and_fix(tmp_path):
    with pytest.raises(ManoModelError) as e:
        load_mano_arrays(tmp_path / "nowhere")
    msg = str(e.value)
    assert str(tmp_path / "nowhere") in msg and "mano.is.tue.mpg.de" in msg
    with pytest.raises(ManoModelError) as e:
        load_mano_arrays(tmp_path)          # a folder without the file
    assert str(tmp_path / "MANO_RIGHT.pkl") in str(e.value)


def test_left_hand_file_is_refused(tmp_path):
    left = write_synthetic_mano(tmp_path / "MANO_LEFT.pkl")
    with pytest.raises(ManoModelError, match="LEFT-hand"):
        load_mano_arrays(left)


def test_body_model_is_refused(tmp_path):
    p = tmp_path / "SMPLH_NEUTRAL.pkl"
    data = {k: np.zeros(s) for k, s in [("v_template", (6890, 3)), ("shapedirs", (6890, 3, 10)),
                                         ("posedirs", (6890, 3, 207)), ("J_regressor", (24, 6890)),
                                         ("weights", (6890, 24)), ("kintree_table", (2, 24)),
                                         ("f", (13776, 3))]}
    p.write_bytes(pickle.dumps(data, protocol=2))
    with pytest.raises(ManoModelError, match="SMPL/SMPL\\+H body model"):
        load_mano_arrays(p)


def test_corrupt_file_is_reported(mano_path, tmp_path):
    p = tmp_path / "MANO_RIGHT.pkl"
    p.write_bytes(mano_path.read_bytes()[:5000])
    with pytest.raises(ManoModelError, match="corrupt or truncated"):
        load_mano_arrays(p)


def test_forward_joint_order_and_fingertips(mano_path):
    layer = ManoLayer.from_file(mano_path)
    torch.manual_seed(0)
    b = 3
    rot = rot6d_to_rotmat(torch.randn(b, 16, 6))
    betas = torch.randn(b, 10)
    verts, joints = layer(rot[:, 0], rot[:, 1:], betas)
    assert verts.shape == (b, 778, 3) and joints.shape == (b, 21, 3)
    assert layer.faces.shape == (1538, 3)
    # the 16 kinematic joints straight from smplx, then the tips, in OpenPose order
    v_ref, j16 = lbs(betas, rot, layer.v_template, layer.shapedirs, layer.posedirs, layer.J_regressor,
                     layer.parents, layer.lbs_weights, pose2rot=False)
    torch.testing.assert_close(verts, v_ref)
    assert FINGERTIP_VERTICES == (744, 320, 443, 554, 671)
    for out_idx, tip in zip((4, 8, 12, 16, 20), FINGERTIP_VERTICES):
        torch.testing.assert_close(joints[:, out_idx], verts[:, tip])
    names = {0: 0, 1: 13, 2: 14, 3: 15, 5: 1, 6: 2, 7: 3, 9: 4, 10: 5, 11: 6, 13: 10, 14: 11, 15: 12,
             17: 7, 18: 8, 19: 9}
    for out_idx, mano_idx in names.items():
        torch.testing.assert_close(joints[:, out_idx], j16[:, mano_idx])
    assert OPENPOSE_ORDER[1:4] == (13, 14, 15)


def test_identity_pose_gives_rest_joints(mano_path):
    layer = ManoLayer.from_file(mano_path)
    eye = torch.eye(3).expand(1, 16, 3, 3)
    verts, joints = layer(eye[:, 0], eye[:, 1:], torch.zeros(1, 10))
    torch.testing.assert_close(verts[0], layer.v_template)
    torch.testing.assert_close(joints[0, 0], layer.J_regressor[0] @ layer.v_template)
