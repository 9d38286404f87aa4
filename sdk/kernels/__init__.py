"""Integer kernels: NumPy references (the specification) and Numba fast twins."""
