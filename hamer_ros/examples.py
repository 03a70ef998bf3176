"""The demo's example photos: the reference project's four test images, found or downloaded once.

Looked for, in order, in a folder holding all of test1.jpg … test4.jpg:
  1. $HAMER_ROS_EXAMPLES
  2. ../shared/data/hamer_examples beside this repository (the developers' machines)
  3. the user cache, $XDG_CACHE_HOME/hamer_ros/examples (default ~/.cache/hamer_ros/examples)
When none has them, `ensure_examples` downloads them from the HaMeR repository at a pinned commit
into the cache, checking each file's SHA-256. Tests only ever call `find_examples`.

    python -m hamer_ros.examples      # prints the folder (downloading if needed), or one error line
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

ENV_VAR = "HAMER_ROS_EXAMPLES"
# geopavlakos/hamer, "Update README.md" (2026-02-07): the snapshot hamer_ros was written against.
PINNED_COMMIT = "3a01849f4148352e9260b69bf28b65d1671a4905"
BASE_URL = f"https://raw.githubusercontent.com/geopavlakos/hamer/{PINNED_COMMIT}/example_data/"
EXAMPLE_FILES = {
    "test1.jpg": "8ee090a3f1521367e7bdc320a6ed2cbae1f08dff842cb319d816aabafaab9263",
    "test2.jpg": "c7b3eeaff05b9c4b62d9126289baa04fae534e7364b2467e65ee26cd8e878c33",
    "test3.jpg": "90c750c4253b662bc4c1d22c012437a8d5b0ab799135f03c3f8402812df9e363",
    "test4.jpg": "d6664110f21dac2ae853e494f0c2333145f4135dd882c367ec3c59566b6dd8f3",
}
HOW_TO_ENABLE = (f"set {ENV_VAR} to a folder holding test1.jpg … test4.jpg, or let `bash scripts/run.sh` "
                 "(or `python -m hamer_ros.examples`) download them once")


class ExamplesError(RuntimeError):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "hamer_ros" / "examples"


def candidate_dirs() -> list[Path]:
    """Where the photos are looked for, in order."""
    dirs = []
    if os.environ.get(ENV_VAR):
        dirs.append(Path(os.environ[ENV_VAR]).expanduser())
    # resolve(): an installed copy may be symlinks into the source tree (colcon --symlink-install)
    repo = Path(__file__).resolve().parents[1]
    dirs += [repo.parent / "shared" / "data" / "hamer_examples", cache_dir()]
    return dirs


def find_examples() -> Path | None:
    """The first candidate folder holding every example file, or None. Never downloads."""
    for d in candidate_dirs():
        if all((d / name).is_file() for name in EXAMPLE_FILES):
            return d
    return None


def not_found_message() -> str:
    looked = ", ".join(str(d) for d in candidate_dirs())
    return f"example photos not found (looked in {looked}): {HOW_TO_ENABLE}"


def download_examples(dest: Path, base_url: str | None = None, files: dict[str, str] = EXAMPLE_FILES,
                      timeout: float = 30.0) -> Path:
    """Fetch `files` (name → SHA-256) from `base_url` (default BASE_URL) into `dest`. Each file is
    checked before it is moved into place, so `dest` never holds a partial or wrong file."""
    base_url = base_url or BASE_URL
    dest.mkdir(parents=True, exist_ok=True)
    for name, sha256 in files.items():
        target = dest / name
        if target.is_file() and _sha256(target.read_bytes()) == sha256:
            continue
        url = base_url + name
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                data = response.read()
        except (urllib.error.URLError, OSError) as e:
            reason = f"HTTP {e.code} {e.reason}" if isinstance(e, urllib.error.HTTPError) else getattr(e, "reason", e)
            raise ExamplesError(f"cannot download the example photos ({url}: {reason}); without internet "
                                f"access set {ENV_VAR} to a folder holding test1.jpg … test4.jpg (the HaMeR "
                                "project's example_data/), or run `bash scripts/run.sh infer PATH... --out DIR` "
                                "on your own photos") from None
        got = _sha256(data)
        if got != sha256:
            raise ExamplesError(f"downloaded {url} has SHA-256 {got}, expected {sha256}: not the pinned file, "
                                f"so it was not kept; {HOW_TO_ENABLE}")
        with tempfile.NamedTemporaryFile(dir=dest, prefix=f".{name}.", delete=False) as f:
            f.write(data)
        os.replace(f.name, target)
    return dest


def ensure_examples() -> Path:
    """The example folder, downloading into the cache (and saying so on stderr) when none has them."""
    found = find_examples()
    if found is not None:
        return found
    dest = cache_dir()
    print(f"example photos not found locally: downloading the HaMeR project's {len(EXAMPLE_FILES)} "
          f"example images (commit {PINNED_COMMIT[:7]}) to {dest}", file=sys.stderr)
    download_examples(dest)
    print(f"checked their SHA-256 and cached them in {dest}", file=sys.stderr)
    return dest


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main() -> int:
    try:
        print(ensure_examples())
    except (ExamplesError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
