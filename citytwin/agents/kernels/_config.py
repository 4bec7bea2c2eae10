"""Numba flags for every kernel, in one place.

Kernels import :data:`njit` from here instead of configuring numba themselves. ``cache=True``
keeps the compiled machine code on disk so that only the first run on a machine pays the
compile cost. Nothing here changes numba's global configuration.
"""

from __future__ import annotations

import numba

#: Flags shared by every serial kernel. ``fastmath`` stays off: it would let LLVM reorder
#: floating point sums and break byte-for-byte determinism across builds.
NJIT_FLAGS: dict[str, bool] = {"cache": True, "nogil": True, "fastmath": False}

njit = numba.njit(**NJIT_FLAGS)  # type: ignore[call-overload]

#: For small helpers called in hot loops: compiled into their callers (no call overhead and
#: no passing of array bundles by value).
njit_inline = numba.njit(inline="always", **NJIT_FLAGS)  # type: ignore[call-overload]
