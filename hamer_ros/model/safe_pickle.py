"""A restricted unpickler: rebuilds arrays, tensors and plain containers; never imports or runs
anything named by the file.

Foreign classes (a pickled yacs/omegaconf config, chumpy arrays, scipy matrices) become inert
`Foreign` stand-ins holding the state the file gave them. Pickle builds such objects without
calling them (NEWOBJ + BUILD); a file that *calls* a foreign global (REDUCE: how `os.system`
payloads work) is refused, because calling a stand-in raises `UnsafePickleError`.
"""
from __future__ import annotations

import collections
import functools
import pickle
from typing import Any


class UnsafePickleError(pickle.UnpicklingError):
    pass


class Foreign(dict):
    """Stand-in for a class we do not import. dict-based so dict subclasses (yacs CfgNode) keep
    their items; `state` holds what BUILD gave, `items` what APPENDS gave."""

    module = "?"
    name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "Foreign":
        obj = super().__new__(cls)
        obj.state = None
        obj.items_ = []
        obj.new_args = args
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Only reached when the pickle *calls* the global (REDUCE), never for NEWOBJ/BUILD.
        raise UnsafePickleError(
            f"the file calls {self.module}.{self.name}(...) while loading; refusing to load it "
            "(a data file has no reason to run code)")

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def append(self, item: Any) -> None:
        self.items_.append(item)

    def extend(self, items: Any) -> None:
        self.items_.extend(items)

    def __reduce__(self):  # never re-pickle a stand-in as if it were the real class
        raise TypeError(f"stand-in for {self.module}.{self.name} cannot be pickled")

    def __repr__(self) -> str:
        return f"<Foreign {self.module}.{self.name}>"


@functools.cache
def _numpy_globals() -> dict[tuple[str, str], Any]:
    import numpy as np

    try:
        from numpy.core.multiarray import _reconstruct, scalar  # numpy 1.x
    except ImportError:  # pragma: no cover - numpy 2 keeps these in numpy._core
        from numpy._core.multiarray import _reconstruct, scalar
    out = {}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out[(mod, "_reconstruct")] = _reconstruct
        out[(mod, "scalar")] = scalar
    out[("numpy", "ndarray")] = np.ndarray
    out[("numpy", "dtype")] = np.dtype
    return out


# Names that only appear in a pickle to run code. Refused by name for a clear message; anything
# else unknown becomes an inert stand-in anyway.
_CODE_MODULES = {"os", "posix", "nt", "subprocess", "sys", "builtins", "__builtin__", "importlib",
                 "runpy", "shutil", "socket", "ctypes", "marshal", "types", "code", "pty", "pickle",
                 "_pickle", "functools", "operator", "webbrowser", "multiprocessing", "io", "codecs"}
_SAFE_BUILTINS = {"set", "frozenset", "dict", "list", "tuple", "complex", "slice", "bytearray",
                  "object", "bytes", "str", "int", "float", "bool"}


@functools.cache
def _torch_globals() -> dict[str, Any]:
    """torch's own vetted allowlist for weights-only loading (tensor rebuilders, dtypes, ...)."""
    try:
        import torch._weights_only_unpickler as wo
        return dict(wo._get_allowed_globals())
    except (ImportError, AttributeError):  # pragma: no cover - private API moved
        import torch
        import torch._utils as tu
        return {"torch._utils._rebuild_tensor_v2": tu._rebuild_tensor_v2,
                "torch._utils._rebuild_parameter": tu._rebuild_parameter,
                "torch.nn.parameter.Parameter": torch.nn.Parameter, "torch.Size": torch.Size,
                "torch.device": torch.device}


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if module.split(".")[0] == "torch":
            allowed = _torch_globals().get(f"{module}.{name}")
            if allowed is not None:
                return allowed
        numpy_globals = _numpy_globals()
        if key in numpy_globals:
            return numpy_globals[key]
        if module in ("builtins", "__builtin__") and name in _SAFE_BUILTINS:
            return getattr(__import__("builtins"), name)
        if key in {("collections", "OrderedDict"), ("collections", "defaultdict")}:
            return getattr(collections, name)
        if key == ("_codecs", "encode"):   # how Python 3 writes bytes at protocol 2 (torch.save too)
            import _codecs
            return _codecs.encode
        if key in {("copyreg", "_reconstructor"), ("copy_reg", "_reconstructor")}:
            import copyreg
            return copyreg._reconstructor
        if module.split(".")[0] in _CODE_MODULES:
            raise UnsafePickleError(f"the file references {module}.{name}; refusing to load it")
        return type(name, (Foreign,), {"module": module, "name": name, "__module__": __name__})


def foreign_name(obj: Any) -> str | None:
    return f"{obj.module}.{obj.name}" if isinstance(obj, Foreign) else None
