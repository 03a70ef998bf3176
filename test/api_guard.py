"""Finds the rclpy names a Python source uses that an rclpy release lacks, by reading its AST.

The release is an inventory written by scripts/rclpy_api_inventory.py (test/data/rclpy_humble_api.json
for Humble). Checked: `import rclpy...` and `from rclpy... import ...`; attribute chains on
rclpy modules and classes (`rclpy.logging.get_logger`, enum members such as `ReliabilityPolicy.RELIABLE`);
`self.x` / `super().x` in classes derived from an rclpy class (Node, LifecycleNode); methods on
values whose rclpy class is known (a constructor call, an annotated return such as
`create_subscription` -> Subscription, a logger). A newer name is accepted only in the
compatibility module, inside a `try:` that catches ImportError or AttributeError.
"""
from __future__ import annotations

import ast
import importlib
import json
from dataclasses import dataclass
from pathlib import Path

# Returns rclpy does not annotate, by the class it documents.
UNANNOTATED_RETURNS = {
    "rclpy.node.Node.get_logger": "rclpy.impl.rcutils_logger.RcutilsLogger",
    "rclpy.logging.get_logger": "rclpy.impl.rcutils_logger.RcutilsLogger",
    "rclpy.create_node": "rclpy.node.Node",
}


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    name: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.name} is not in Humble's rclpy"


class Inventory:
    def __init__(self, data: dict) -> None:
        self.modules: dict[str, dict] = data["modules"]
        self.source: str = data["source"]

    @classmethod
    def load(cls, path: Path) -> Inventory:
        return cls(json.loads(Path(path).read_text()))

    def resolve(self, dotted: str) -> tuple[str, str] | None:
        """('module' | 'class' | 'other', canonical name) for an rclpy name, or None if absent.
        Names from outside rclpy (messages, the standard library) come back as 'other'."""
        if not dotted.startswith("rclpy"):
            return ("other", dotted)
        parts = dotted.split(".")
        for i in range(len(parts), 0, -1):   # the longest module prefix
            mod = ".".join(parts[:i])
            if mod in self.modules:
                return self._walk(mod, parts[i:])
        return None

    def _walk(self, mod: str, rest: list[str]) -> tuple[str, str] | None:
        if not rest:
            return ("module", mod)
        name, tail = rest[0], rest[1:]
        info = self.modules[mod]
        if f"{mod}.{name}" in self.modules:
            return self._walk(f"{mod}.{name}", tail)
        if name in info["classes"]:
            return self.member(f"{mod}.{name}", tail) if tail else ("class", f"{mod}.{name}")
        if name in info["imports"]:              # re-exported: follow it to where it is defined
            origin = info["imports"][name]
            if origin.startswith("rclpy") and origin != f"{mod}.{name}":
                return self.resolve(".".join([origin, *tail]))
            return ("other", origin)
        if name in info["names"]:
            return ("other", f"{mod}.{name}")
        return None

    def _class(self, cls: str) -> dict | None:
        mod, _, name = cls.rpartition(".")
        return self.modules.get(mod, {}).get("classes", {}).get(name)

    def _lineage(self, cls: str) -> list[tuple[str, dict]]:
        """The class and its rclpy bases, nearest first, as (name, inventory entry)."""
        seen: dict[str, dict] = {}
        todo = [cls]
        while todo:
            c = todo.pop(0)
            info = self._class(c)
            if info is not None and c not in seen:
                seen[c] = info
                todo += info["bases"]
        return list(seen.items())

    def member(self, cls: str, rest: list[str]) -> tuple[str, str] | None:
        """Looks `rest[0]` up on the class and its rclpy bases."""
        lineage = self._lineage(cls)
        for c, info in lineage:
            if rest[0] in info["members"]:
                return ("other", f"{c}.{rest[0]}")
        # A base from outside rclpy (IntEnum, Generic, ...) may provide it: ask that class.
        for base in {b for _, info in lineage for b in info["bases"] if not b.startswith("rclpy")}:
            module, _, name = base.rpartition(".")
            try:
                klass = getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError):
                return ("other", f"{cls}.{rest[0]}")    # cannot tell: not reported
            if hasattr(klass, rest[0]):
                return ("other", f"{base}.{rest[0]}")
        return None

    def returns(self, qualified: str) -> str | None:
        """The rclpy class a function or method returns, where known."""
        if qualified in UNANNOTATED_RETURNS:
            return UNANNOTATED_RETURNS[qualified]
        owner, _, name = qualified.rpartition(".")
        for c, info in self._lineage(owner):
            found = info["returns"].get(name) or UNANNOTATED_RETURNS.get(f"{c}.{name}")
            if found:
                return found
        return None


def _chain(node: ast.AST) -> list[str] | None:
    """['a', 'b', 'c'] for a.b.c; None for anything else."""
    out = []
    while isinstance(node, ast.Attribute):
        out.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(out)]
    return None


def _guarded_lines(tree: ast.AST) -> set[int]:
    """Lines inside a `try:` body whose handlers catch ImportError or AttributeError."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        caught = set()
        for h in node.handlers:
            for n in ast.walk(h.type) if h.type is not None else []:
                if isinstance(n, ast.Name):
                    caught.add(n.id)
        if caught & {"ImportError", "ModuleNotFoundError", "AttributeError"}:
            for stmt in node.body:
                lines.update(range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1))
    return lines


class _Scanner(ast.NodeVisitor):
    def __init__(self, inv: Inventory, path: str, guarded: set[int]) -> None:
        self.inv, self.path, self.guarded = inv, path, guarded
        self.aliases: dict[str, str] = {}          # local name -> rclpy dotted name
        self.var_types: dict[str, str] = {}        # local variable -> rclpy class
        self.self_class: list[tuple[str, set[str], dict[str, str]]] = []   # (rclpy base, own names, attr types)
        self.found: list[Violation] = []
        self.used: set[str] = set()                # every rclpy name checked

    # -- reporting ------------------------------------------------------------------------------
    def _check(self, dotted: str, line: int) -> tuple[str, str] | None:
        self.used.add(dotted)
        r = self.inv.resolve(dotted)
        if r is None and line not in self.guarded:
            self.found.append(Violation(self.path, line, dotted))
        return r

    def _check_member(self, cls: str, attr: str, line: int) -> None:
        self.used.add(f"{cls}.{attr}")
        if self.inv.member(cls, [attr]) is None and line not in self.guarded:
            self.found.append(Violation(self.path, line, f"{cls}.{attr}"))

    # -- imports --------------------------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            if a.name.split(".")[0] == "rclpy":
                self._check(a.name, node.lineno)
                if a.asname:
                    self.aliases[a.asname] = a.name
                else:
                    self.aliases["rclpy"] = "rclpy"

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module and node.module.split(".")[0] == "rclpy":
            if self._check(node.module, node.lineno) is None:
                return
            for a in node.names:
                self._check(f"{node.module}.{a.name}", node.lineno)
                self.aliases[a.asname or a.name] = f"{node.module}.{a.name}"

    # -- types of values ------------------------------------------------------------------------
    def _type_of(self, expr: ast.AST) -> str | None:
        """The rclpy class of an expression's value, where the source tells it."""
        if isinstance(expr, ast.Call):
            f = expr.func
            chain = _chain(f)
            if chain and chain[0] in self.aliases:
                dotted = ".".join([self.aliases[chain[0]], *chain[1:]])
                r = self.inv.resolve(dotted)
                if r and r[0] == "class":
                    return r[1]
                if r:
                    return self.inv.returns(r[1])
            if isinstance(f, ast.Attribute):
                owner = self._type_of(f.value)
                if owner:
                    return self.inv.returns(f"{owner}.{f.attr}")
            return None
        if self._is_self(expr) and self.self_class:
            return self.self_class[-1][0]
        if isinstance(expr, ast.Name):
            return self.var_types.get(expr.id)
        if isinstance(expr, ast.Attribute) and self._is_self(expr.value) and self.self_class:
            return self.self_class[-1][2].get(expr.attr)
        return None

    @staticmethod
    def _is_self(expr: ast.AST) -> bool:
        return isinstance(expr, ast.Name) and expr.id == "self"

    # -- classes deriving from rclpy ones --------------------------------------------------------
    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        base = None
        for b in node.bases:
            chain = _chain(b)
            if chain and chain[0] in self.aliases:
                r = self.inv.resolve(".".join([self.aliases[chain[0]], *chain[1:]]))
                if r and r[0] == "class":
                    base = r[1]
        if base is None:
            self.generic_visit(node)
            return
        own: set[str] = set()
        attr_types: dict[str, str] = {}
        for n in ast.walk(node):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                own.add(n.name)
            elif isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store) and self._is_self(n.value):
                own.add(n.attr)
        for item in node.body:
            if isinstance(item, (ast.Assign, ast.AnnAssign)):
                for t in item.targets if isinstance(item, ast.Assign) else [item.target]:
                    if isinstance(t, ast.Name):
                        own.add(t.id)
        self.self_class.append((base, own, attr_types))
        # attribute types first, so a use above its assignment in the file is still typed
        for n in ast.walk(node):
            if isinstance(n, ast.Assign) and len(n.targets) == 1:
                t = n.targets[0]
                if isinstance(t, ast.Attribute) and self._is_self(t.value):
                    typ = self._type_of(n.value)
                    if typ:
                        attr_types[t.attr] = typ
        self.generic_visit(node)
        self.self_class.pop()

    def visit_Assign(self, node: ast.Assign) -> None:
        typ = self._type_of(node.value)
        for t in node.targets:
            if isinstance(t, ast.Name):
                if typ:
                    self.var_types[t.id] = typ
                else:
                    self.var_types.pop(t.id, None)
        self.generic_visit(node)

    # -- uses -----------------------------------------------------------------------------------
    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain = _chain(node)
        if chain and chain[0] in self.aliases:
            self._check(".".join([self.aliases[chain[0]], *chain[1:]]), node.lineno)
            return   # the whole chain is checked; its inner Attributes are part of it
        value = node.value
        if self._is_self(value) and self.self_class:
            base, own, _ = self.self_class[-1]
            if node.attr not in own:
                self._check_member(base, node.attr, node.lineno)
        elif (isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super"
              and self.self_class):
            self._check_member(self.self_class[-1][0], node.attr, node.lineno)
        else:
            typ = self._type_of(value)
            if typ:
                self._check_member(typ, node.attr, node.lineno)
        self.generic_visit(node)


def scan_source(source: str, inv: Inventory, path: str = "<source>",
                compat: bool = False) -> tuple[list[Violation], set[str]]:
    """The violations in one source, and every rclpy name it uses."""
    tree = ast.parse(source)
    scanner = _Scanner(inv, path, _guarded_lines(tree) if compat else set())
    scanner.visit(tree)
    return scanner.found, scanner.used


def scan(paths: list[Path], inv: Inventory, compat_module: Path,
         root: Path) -> tuple[list[Violation], set[str]]:
    found: list[Violation] = []
    used: set[str] = set()
    for p in paths:
        f, u = scan_source(p.read_text(), inv, str(p.relative_to(root)), compat=p.resolve() == compat_module.resolve())
        found += f
        used |= u
    return found, used
