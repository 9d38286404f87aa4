"""Numba fast twins of the integer kernels: same signatures as the NumPy references in
``sdk.kernels``, bit-exact with them (tests/kernels check every pair). Functions compile on
first call and cache to disk."""
