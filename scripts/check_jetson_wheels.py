"""Resolves hamer_ros's dependencies for a Jetson from binary wheels only, installing nothing.

    python scripts/check_jetson_wheels.py [--also REQ ...]

JetPack 6 is linux-aarch64, CPython 3.10, glibc 2.35. The requirements are the ones
scripts/bootstrap.sh installs (setup.py with the onnx, test, bag and ray extras, under
scripts/constraints.txt, and numpy<2 as beside JetPack's torch 2.3). torch is not taken from the
index: JetPack brings its own CUDA build, so a stand-in wheel of JetPack 6.0's torch version takes
its place, and a dependency that needs a newer torch still fails here. Prints the version picked for every package (exit 0), or the
package that has no wheel for that platform (exit 1). Needs the package index.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("onnx", "test", "bag", "ray")
JETPACK_TORCH = "2.3.0"     # JetPack 6.0's PyTorch (6.1 and 6.2 ship newer ones)
# glibc 2.35 (Ubuntu 22.04) runs every manylinux wheel up to manylinux_2_35
PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64", "manylinux_2_31_aarch64",
             "manylinux_2_34_aarch64", "manylinux_2_35_aarch64")
TARGET = ("--python-version", "3.10", "--implementation", "cp", "--abi", "cp310", "--abi", "abi3",
          "--abi", "none", "--only-binary=:all:", *(a for p in PLATFORMS for a in ("--platform", p)))


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
                           "--dry-run", "--ignore-installed", *args], capture_output=True, text=True)


def project_requirements() -> list[str]:
    """setup.py's requirements with the bootstrap's extras, read from its built metadata."""
    from packaging.requirements import Requirement

    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "self.json"
        r = _pip("--no-deps", "--report", str(report), f"{ROOT}[{','.join(EXTRAS)}]")
        if r.returncode:
            raise SystemExit(f"cannot read hamer_ros's own metadata:\n{r.stderr}")
        meta = json.loads(report.read_text())["install"][0]["metadata"]
    reqs = []
    for text in meta.get("requires_dist", []):
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in EXTRAS):
            req.marker = None
            reqs.append(str(req))
    return reqs


def _torch_stand_in(folder: Path) -> str:
    """A metadata-only wheel named like JetPack's torch, so the resolver treats torch as given."""
    version = f"{JETPACK_TORCH}+jetpack6"
    info = f"torch-{version}.dist-info"
    wheel = folder / f"torch-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: hamer_ros\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return version


def resolve(also: list[str]) -> int:
    # numpy<2: bootstrap.sh's pin beside a torch older than 2.4 (and Humble's own NumPy 1)
    reqs = [r for r in project_requirements() if not re.match(r"torch\b", r)] + ["numpy<2"] + also
    with tempfile.TemporaryDirectory() as tmp:
        stub = Path(tmp) / "stub"
        stub.mkdir()
        torch_version = _torch_stand_in(stub)
        pins = Path(tmp) / "torch.txt"
        pins.write_text(f"torch=={torch_version}\n")
        report = Path(tmp) / "report.json"
        common = (*TARGET, "--target", str(Path(tmp) / "target"), "--find-links", str(stub),
                  "-c", str(ROOT / "scripts/constraints.txt"), "-c", str(pins))
        r = _pip(*common, "--report", str(report), *reqs)
        if r.returncode:
            # A conflict hides which package lacks a wheel: then each requirement alone tells.
            errors = [r.stderr] if "No matching distribution" in r.stderr else \
                [_pip(*common, req).stderr for req in reqs]
            versions = [m for e in errors for m in re.findall(
                r"Could not find a version that satisfies the requirement (\S+) \(from versions: ([^)]*)\)", e)]
            if versions:
                names = ", ".join(name for name, _ in versions)
                there = "; ".join(f"{name}: {v or 'none'}" for name, v in versions)
                print(f"no linux-aarch64 / CPython 3.10 wheel for {names} (versions there: {there})")
            else:
                print("cannot resolve for linux-aarch64 / CPython 3.10:\n" + "\n".join(
                    line for line in r.stderr.splitlines() if not line.startswith("WARNING: Location")))
            return 1
        picked = sorted((i["metadata"]["name"], i["metadata"]["version"]) for i in json.loads(report.read_text())["install"])
    print(f"linux-aarch64 / CPython 3.10 (JetPack 6), binary wheels only; requirements: {', '.join(reqs)}")
    for name, version in picked:
        print(f"  {name}=={version}" + ("   (JetPack's own; not from the index)" if name == "torch" else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--also", nargs="*", default=[], help="more requirements to resolve with them")
    return resolve(ap.parse_args(argv).also)


if __name__ == "__main__":
    sys.exit(main())
