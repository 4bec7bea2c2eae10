"""Numba flags for every kernel, in one place.

Kernels import :data:`njit` from here instead of configuring numba themselves. ``cache=True``
keeps the compiled machine code on disk so that only the first run on a machine pays the
compile cost. Nothing here changes numba's global configuration.

Numba checks a cached kernel against its own source file only, so a kernel that inlines a
helper from another file would keep running the helper's old code after an edit.
:class:`_KernelsLocator` stamps the cache of every kernel in this package with a hash of all
of the package's sources instead: any kernel edit recompiles them all.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numba
from numba.core import caching

_KERNELS_DIR = Path(__file__).resolve().parent
_STAMP = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(_KERNELS_DIR.glob("*.py")))
                        ).hexdigest()


class _StampAllSources:
    def get_source_stamp(self) -> str:
        return _STAMP

    @classmethod
    def from_function(cls, py_func, py_file):
        if Path(py_file).resolve().parent != _KERNELS_DIR:
            return None
        return super().from_function(py_func, py_file)  # type: ignore[misc]


class _KernelsLocator(_StampAllSources, caching.InTreeCacheLocator):
    """Cache beside the modules (``__pycache__``), stamped with all kernel sources."""


class _KernelsUserDirLocator(_StampAllSources, caching.UserProvidedCacheLocator):
    """Same, in ``NUMBA_CACHE_DIR`` when the user sets one."""


if _KernelsLocator not in caching.CacheImpl._locator_classes:
    caching.CacheImpl._locator_classes[:0] = [_KernelsUserDirLocator, _KernelsLocator]

#: Flags shared by every serial kernel. ``fastmath`` stays off: it would let LLVM reorder
#: floating point sums and break byte-for-byte determinism across builds.
NJIT_FLAGS: dict[str, bool] = {"cache": True, "nogil": True, "fastmath": False}

njit = numba.njit(**NJIT_FLAGS)  # type: ignore[call-overload]

#: For small helpers called in hot loops: compiled into their callers (no call overhead and
#: no passing of array bundles by value).
njit_inline = numba.njit(inline="always", **NJIT_FLAGS)  # type: ignore[call-overload]
