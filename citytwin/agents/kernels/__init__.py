"""Numba kernels over plain arrays (numpy and numba only; no Mesa objects, dicts or strings).

Each module holds the kernels of one phase of a tick; :mod:`._config` holds the numba flags.
Slow references live in ``tests/naive.py`` and are compared with these in the tests.
"""
