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
import warnings
from pathlib import Path

import numba
from numba.core import caching
from numba.core.errors import NumbaPerformanceWarning

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
NJIT_FLAGS: dict[str, object] = {"cache": True, "nogil": True, "fastmath": False}

njit = numba.njit(**NJIT_FLAGS)  # type: ignore[call-overload]

#: numba's parallel pipeline with every transformation off: nothing runs in parallel, but
#: its IR passes (copy propagation above all) drop most of the reference counting numba
#: otherwise emits around every array handed to an inlined helper. For the kernels whose hot
#: loops call such helpers: the car-following and lane-change kernels ran 2-4x faster with
#: it and the move kernel 1.2x, with the same bytes out; the prepass, slower with it when
#: first tried, 1.3-1.5x since (benchmarks/RESULTS.md, 2026-12-04). The kernels without such
#: helpers keep :data:`njit`. The tick kernel, which hands the array bundles to every other
#: kernel each tick, too: 1.1-1.3x on whole runs.
_PIPELINE = {"comprehension": False, "prange": False, "setitem": False, "numpy": False,
             "stencil": False, "fusion": False, "reduction": False, "inplace_binop": False}
njit_pipelined = numba.njit(parallel=_PIPELINE, **NJIT_FLAGS)  # type: ignore[call-overload]
# ... and numba says, on compiling them, that it found nothing to run in parallel: true, and
# meant. Only that message is silenced.
warnings.filterwarnings("ignore", message=r"(?s).*The keyword argument 'parallel=True' was "
                        r"specified but no transformation", category=NumbaPerformanceWarning)

# No kernel runs on several cores: a car-following kernel with ``numba.prange`` (the same
# bytes out) stepped 0.9-1.12x as fast as this serial one on 2 cores (benchmarks/RESULTS.md),
# and numba crashes loading a cached serial kernel that calls a parallel one (numba issue
# 8578), which a tick kernel calling it is. The pipeline above still opens OpenMP regions,
# whose idle workers spin; ``City._run_ticks`` therefore calls the tick kernel with one numba
# thread.

#: For kernels whose loops must run as vectors: numba's default error model checks every
#: division for a zero divisor (to raise ZeroDivisionError), and a loop with such a check
#: stays scalar. Only for kernels whose divisors are never zero; a call costs nanoseconds.
njit_vector = numba.njit(error_model="numpy", **NJIT_FLAGS)  # type: ignore[call-overload]

#: For small helpers called in hot loops: compiled into their callers (no call overhead).
#:
#: A helper called per vehicle takes the arrays and numbers it reads, never an array bundle
#: (``veh``, ``types``, ``roads``, ``ls``, ...): numba counts a reference to every array of a
#: named tuple handed to a function, inlined or not, and on the 30x30 grid that bookkeeping
#: cost more than the helpers' work (the junction look-ahead ran 2x faster without it). The
#: kernels called once per tick take the bundles.
njit_inline = numba.njit(inline="always", **NJIT_FLAGS)  # type: ignore[call-overload]
