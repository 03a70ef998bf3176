"""Writes the public Python API of one rclpy release as a small JSON inventory.

    python scripts/rclpy_api_inventory.py RCLPY_GIT_DIR [--ref humble] [--out test/data/rclpy_humble_api.json]

RCLPY_GIT_DIR is a clone (or bare mirror) of ros2/rclpy; the sources are read from REF with
`git show`, never imported, so any rclpy release can be inventoried on any machine. For every
module under rclpy/rclpy/: its top-level names (definitions and imports, which are importable
too), and for every class its bases (resolved to module.Class where they come from rclpy), its
members (methods, properties, class attributes such as enum members, `self.x` attributes) and
the classes its annotated methods return. test/test_humble_api.py checks hamer_ros against it.
"""
from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from pathlib import Path

SRC = "rclpy/rclpy/"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def _module_name(path: str) -> str:
    parts = path[len("rclpy/"):-len(".py")].split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(node: ast.expr | None, imports: dict[str, str], module: str, local: set[str]) -> str | None:
    """'module.Class' for a base or return annotation naming a class, when it can be told."""
    if node is None:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):   # a string annotation
        try:
            node = ast.parse(node.value, mode="eval").body
        except SyntaxError:
            return None
    if isinstance(node, ast.Name):
        if node.id in local:
            return f"{module}.{node.id}"
        return imports.get(node.id)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in imports:
        return f"{imports[node.value.id]}.{node.attr}"
    return None


def inventory_module(source: str, module: str, is_package: bool = False) -> dict:
    tree = ast.parse(source)
    anchor = (module if is_package else module.rsplit(".", 1)[0]).split(".")   # what `from .` means
    imports: dict[str, str] = {}   # local name -> dotted origin
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            for a in node.names:
                local = a.asname or a.name.split(".")[0]
                imports[local] = a.name if a.asname else a.name.split(".")[0]
                names.add(local)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(anchor[: len(anchor) - node.level + 1] + ([base] if base else []))
            for a in node.names:
                if a.name == "*":
                    continue
                imports[a.asname or a.name] = f"{base}.{a.name}"
                names.add(a.asname or a.name)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        names.add(n.id)
    local_classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    classes = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        members: set[str] = set()
        returns: dict[str, str] = {}
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                members.add(item.name)
                r = _resolve(item.returns, imports, module, local_classes)
                if r:
                    returns[item.name] = r
                for n in ast.walk(item):
                    if (isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store)
                            and isinstance(n.value, ast.Name) and n.value.id == "self"):
                        members.add(n.attr)
            elif isinstance(item, (ast.Assign, ast.AnnAssign)):
                for t in item.targets if isinstance(item, ast.Assign) else [item.target]:
                    if isinstance(t, ast.Name):
                        members.add(t.id)
        bases = [b for b in (_resolve(x, imports, module, local_classes) for x in node.bases) if b]
        classes[node.name] = {"bases": bases, "members": sorted(members), "returns": dict(sorted(returns.items()))}
    return {"names": sorted(names), "imports": dict(sorted(imports.items())), "classes": classes}


def inventory(repo: Path, ref: str) -> dict:
    files = [p for p in _git(repo, "ls-tree", "-r", "--name-only", ref, SRC).split()
             if p.endswith(".py")]
    modules = {}
    for path in sorted(files):
        modules[_module_name(path)] = inventory_module(_git(repo, "show", f"{ref}:{path}"), _module_name(path),
                                                       is_package=path.endswith("/__init__.py"))
    commit = _git(repo, "rev-parse", ref).strip()
    return {"source": f"ros2/rclpy {ref} {commit}", "modules": modules}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("repo", type=Path, help="a git clone or mirror of ros2/rclpy")
    ap.add_argument("--ref", default="humble")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "test/data/rclpy_humble_api.json")
    args = ap.parse_args(argv)
    inv = inventory(args.repo, args.ref)
    args.out.write_text(json.dumps(inv, indent=1, sort_keys=True) + "\n")
    n_cls = sum(len(m["classes"]) for m in inv["modules"].values())
    print(f"{args.out}: {len(inv['modules'])} modules, {n_cls} classes ({inv['source']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
