"""python -m benchmarks [NAME [ARGS...]]: run one benchmark, or list them."""
from __future__ import annotations

import ast
import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def available() -> dict[str, str]:
    """name -> the first line of its docstring."""
    out = {}
    for path in sorted(HERE.glob("*.py")):
        if path.stem.startswith("_"):
            continue
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        out[path.stem] = doc.splitlines()[0] if doc else ""
    return out


def main(argv: list[str]) -> int:
    names = available()
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m benchmarks NAME [ARGS...]   (NAME --help for its options)\n")
        width = max(map(len, names))
        print("\n".join(f"  {n:<{width}}  {d}" for n, d in names.items()))
        return 0
    name, rest = argv[0], argv[1:]
    if name not in names:
        print(f"python -m benchmarks: no benchmark '{name}' (there are: {', '.join(names)})", file=sys.stderr)
        return 2
    sys.argv = [str(HERE / f"{name}.py"), *rest]
    runpy.run_path(sys.argv[0], run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
