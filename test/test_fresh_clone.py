"""A clone of this repository is all a user has: no ../shared beside it.

Clones the committed HEAD into a temporary folder and, in the clone with this environment's
packages, collects the whole test suite, runs the test that reads the state-dict listing, and runs
the demo's photo look-up against a fake cached set (and offline, against no set at all).
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip(f"{ROOT} is not a git checkout: nothing to clone")
    dest = tmp_path_factory.mktemp("fresh") / "hamer_ros"
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(ROOT), str(dest)], check=True, timeout=120)
    subprocess.run(["git", "-C", str(dest), "checkout", "-q", head.stdout.strip()], check=True, timeout=120)
    assert not (dest.parent / "shared").exists()
    return dest


def in_clone(clone: Path, args: list[str], cache: Path, **env: str) -> subprocess.CompletedProcess:
    """Python in the clone: its own hamer_ros first on the path (hamer_ros_msgs still comes from
    this environment's colcon install), no HAMER_ROS_EXAMPLES, its own user cache."""
    environ = {k: v for k, v in os.environ.items() if k != "HAMER_ROS_EXAMPLES"}
    environ.update(PYTHONPATH=os.pathsep.join([str(clone), os.environ.get("PYTHONPATH", "")]),
                   XDG_CACHE_HOME=str(cache), **env)
    return subprocess.run([sys.executable, *args], cwd=clone, env=environ, capture_output=True, text=True,
                          timeout=300)


def test_the_test_command_collects_and_finds_its_data_in_a_clone_alone(clone, tmp_path):
    p = in_clone(clone, ["-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"], tmp_path / "cache")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert " error" not in p.stdout.lower() and "tests collected" in p.stdout
    p = in_clone(clone, ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                         "test/test_model.py::test_default_state_dict_matches_reference_listing",
                         "test/test_pipeline.py::test_mediapipe_and_tiny_model_on_a_real_image"],
                 tmp_path / "cache")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "1 passed, 1 skipped" in p.stdout
    # a test needing the photos says how to enable it
    assert "example photos not found" in p.stdout and "HAMER_ROS_EXAMPLES" in p.stdout


def test_the_demo_finds_a_cached_set_and_offline_says_what_to_do(clone, tmp_path):
    cached = tmp_path / "cache" / "hamer_ros" / "examples"
    cached.mkdir(parents=True)
    for name in ("test1.jpg", "test2.jpg", "test3.jpg", "test4.jpg"):
        (cached / name).write_bytes(b"fake")
    p = in_clone(clone, ["-c", "import hamer_ros.examples as e, sys; print(e.__file__); sys.exit(e.main())"],
                 tmp_path / "cache")
    assert p.returncode == 0, p.stderr
    module, found = p.stdout.split()
    assert Path(module).resolve().is_relative_to(clone) and Path(found) == cached
    # nothing anywhere and no way out (a proxy that refuses): one line, non-zero, nothing downloaded
    p = in_clone(clone, ["-m", "hamer_ros.examples"], tmp_path / "empty",
                 https_proxy="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    assert p.returncode == 1 and p.stdout == ""
    err = p.stderr.strip().splitlines()
    assert err[0].startswith("example photos not found locally: downloading the HaMeR project's 4 example images")
    assert len(err) == 2 and err[1].startswith("error: cannot download the example photos")
    assert "HAMER_ROS_EXAMPLES" in err[1]
    assert not any((tmp_path / "empty").rglob("*.jpg"))
