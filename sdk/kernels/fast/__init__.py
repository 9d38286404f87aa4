"""Numba fast twins of the integer kernels: same signatures as the NumPy references in
``sdk.kernels``, bit-exact with them (tests/kernels check every pair). Functions compile on
first call and cache to disk (``__pycache__``).

Numba's disk cache is keyed on each function's own source file: after editing a helper that
other modules inline (``fast/requant.py``, ``fast/gemm.py``), delete
``sdk/kernels/fast/__pycache__/*.nb*`` or the callers keep their stale machine code.
"""
