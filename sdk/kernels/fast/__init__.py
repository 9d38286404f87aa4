"""Numba fast twins of the integer kernels: same signatures as the NumPy references in
``sdk.kernels``, bit-exact with them (tests/kernels check every pair). Functions compile on
first call and cache to disk (``__pycache__``).

Numba's disk cache is keyed on each function's own source file: after editing a helper that
other modules inline (``fast/requant.py``, ``fast/gemm.py``), delete
``sdk/kernels/fast/__pycache__/*.nb*`` or the callers keep their stale machine code.
"""

import importlib.util
import sys


def _defer_scipy_blas() -> None:
    """Numba's first compile or cache load initialises its CPU target, which imports
    ``numba.np.arraymath``; that module asks once, at import, whether a BLAS is there by
    importing ``scipy.linalg.cython_blas`` — ~0.35 s of a new process's first inference (all
    of ``scipy.linalg``), for kernels that use no BLAS. This answers that one question from the
    package index instead (``find_spec``, nothing imported); any later BLAS use (``np.dot`` on
    floats in someone's ``@njit`` code) still imports it through the same function, as before."""
    from numba.np import linalg

    real = linalg.ensure_blas
    if getattr(real, "_edge_deferred", False) or "numba.np.arraymath" in sys.modules:
        return

    def ensure_blas() -> None:
        caller = sys._getframe(1)
        if (caller.f_code.co_name == "_check_blas"
                and caller.f_globals.get("__name__") == "numba.np.arraymath"):
            try:
                found = importlib.util.find_spec("scipy.linalg") is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                raise ImportError("scipy.linalg is not installed")
            return
        real()

    ensure_blas._edge_deferred = True  # type: ignore[attr-defined]
    linalg.ensure_blas = ensure_blas


_defer_scipy_blas()
