"""Make the ROS 2 PyPI wheels' CMake exports usable with this interpreter.

The wheels' exported targets carry the wheel builder's include paths
(/opt/python/cp311-cp311/...), so CMake stops with "includes non-existent path". Rewrite them to
this interpreter's Python and NumPy include directories. Idempotent.
"""
import re
import sys
import sysconfig
from pathlib import Path

import numpy

venv = Path(sys.argv[1])
py_inc = sysconfig.get_paths()["include"]
np_inc = numpy.get_include()
builder = re.compile(r"/opt/python/cp\d+-cp\d+/(?:include/python3\.\d+|lib/python3\.\d+/site-packages/numpy/(?:_core|core)/include)")

def repl(m: re.Match) -> str:
    return np_inc if "numpy" in m.group(0) else py_inc

changed = 0
for f in (venv / "share").rglob("*.cmake"):
    text = f.read_text(errors="surrogateescape")
    new = builder.sub(repl, text)
    if new != text:
        f.write_text(new, errors="surrogateescape")
        changed += 1
if changed:
    print(f"fix_ros_wheels: rewrote builder paths in {changed} CMake files")
