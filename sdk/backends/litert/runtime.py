"""Finding the LiteRT interpreter and loading delegates without ever crashing on a bad one.

LiteRT (``ai-edge-litert``) is the renamed ``tflite-runtime``; older boards only have the
latter, so either is accepted. Delegates are named as in a target's ``delegates`` list:

* ``xnnpack`` — LiteRT's built-in default CPU delegate (op resolver AUTO);
* ``cpu`` — the built-in optimized kernels without default delegates;
* ``reference`` / ``ref`` — the BUILTIN_REF kernels (slow, written for clarity);
* ``edgetpu`` — ``load_delegate('libedgetpu.so.1')``;
* a path to a ``.so`` — an external delegate library (``tflite_plugin_create_delegate``).

A delegate that cannot be loaded raises OSError (no such library), AttributeError (the
library exports no ``tflite_plugin_create_delegate``) or ValueError (the library returned no
delegate, e.g. no device attached). Each becomes a :class:`DelegateChoice` with the reason,
and the next delegate in the list (finally the CPU) is used.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass, field
from typing import Any

from sdk.errors import EdgeError

log = logging.getLogger("sdk.backends.litert")

EDGETPU_LIBRARY = "libedgetpu.so.1"
BUILTIN = {"xnnpack": "AUTO", "cpu": "BUILTIN_WITHOUT_DEFAULT_DELEGATES",
           "reference": "BUILTIN_REF", "ref": "BUILTIN_REF"}
# delegate names that belong to other backends (ONNX Runtime EPs, NPU compilers, MCU kernels)
NOT_LITERT = {"tensorrt", "cuda", "openvino", "qnn", "hailo", "ethos-u", "cmsis-nn"}


def interpreter_module() -> Any:
    """``ai_edge_litert.interpreter``, else ``tflite_runtime.interpreter``."""
    try:
        from ai_edge_litert import interpreter
        return interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter  # type: ignore[import-not-found]
        return interpreter
    except ImportError:
        raise EdgeError("neither ai-edge-litert nor tflite-runtime is installed; "
                        "run `pip install ai-edge-litert`") from None


@dataclass
class DelegateChoice:
    """The outcome of walking a delegate list: what runs, and what was skipped and why."""

    name: str                       # the delegate in use ("xnnpack", "cpu", "edgetpu", a path)
    resolver: str                   # OpResolverType name
    delegate: Any = None            # a loaded external Delegate, or None for built-ins
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)

    def describe(self) -> str:
        s = f"LiteRT runs with {self.name!r} (op resolver {self.resolver})"
        for name, why in self.skipped:
            s += f"; skipped {name!r}: {why}"
        return s


def load_external(library: str, options: dict[str, str] | None = None) -> tuple[Any, str]:
    """(Delegate, '') or (None, reason) — never raises for a missing or broken library."""
    mod = interpreter_module()
    try:
        # Probe with ctypes first: LiteRT's Delegate.__del__ itself raises when its
        # constructor failed on a missing library or symbol, so do not construct one then.
        probe = ctypes.CDLL(library)
        _ = probe.tflite_plugin_create_delegate  # AttributeError when absent
        return mod.load_delegate(library, options), ""
    except OSError as exc:
        return None, f"cannot open delegate library {library!r} ({exc}); is it installed?"
    except AttributeError as exc:
        return None, (f"{library!r} is not a TFLite delegate library: it exports no "
                      f"tflite_plugin_create_delegate ({exc})")
    except ValueError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "no delegate"
        return None, (f"delegate library {library!r} loaded but created no delegate "
                      f"({first}); is the device attached?")
    except RuntimeError as exc:
        return None, f"delegates are not supported on this platform ({exc})"


def choose_delegate(names: list[str] | tuple[str, ...]) -> DelegateChoice:
    """Walk ``names`` in order and return the first delegate that loads (CPU at the end)."""
    skipped: list[tuple[str, str]] = []
    for name in names:
        key = name.lower()
        if key in BUILTIN:
            choice = DelegateChoice(key, BUILTIN[key], None, skipped)
            break
        if key in NOT_LITERT:
            skipped.append((name, "not a LiteRT delegate (used by another backend)"))
            continue
        library = EDGETPU_LIBRARY if key == "edgetpu" else name
        delegate, why = load_external(library)
        if delegate is not None:
            choice = DelegateChoice(name, "AUTO", delegate, skipped)
            break
        skipped.append((name, why))
    else:
        choice = DelegateChoice("cpu", BUILTIN["cpu"], None, skipped)
    for name, why in choice.skipped:
        level = logging.INFO if name.lower() in NOT_LITERT else logging.WARNING
        log.log(level, "LiteRT delegate %r unavailable: %s; falling back", name, why)
    log.info(choice.describe())
    return choice
