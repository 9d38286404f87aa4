"""sdk.compile: integer graphs → bundles (``.edge`` files)."""
from sdk.compile.bundle import Bundle, load_bundle
from sdk.compile.pipeline import compile_model

__all__ = ["Bundle", "compile_model", "load_bundle"]
