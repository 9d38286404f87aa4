"""Exception types. Every error the SDK raises for bad input is one of these, with a message
that names the problem and the fix; the CLI prints the message on one line."""


class EdgeError(Exception):
    """Base class for all SDK errors meant for the user."""


class GraphError(EdgeError):
    """The graph is malformed (dangling tensor, cycle, bad shape)."""


class UnsupportedOpError(EdgeError):
    """The model uses operators the SDK (or a backend) does not implement."""

    def __init__(self, ops: list[str], where: str = "the SDK", hint: str = "") -> None:
        # an op may be named by a number (a builtin code, an integer-like op_type): all as text
        self.ops = sorted({o if isinstance(o, str) else str(o) for o in ops})
        msg = f"unsupported operator(s) for {where}: {', '.join(self.ops)}"
        if hint:
            msg += f"; {hint}"
        super().__init__(msg)


class ModelFormatError(EdgeError):
    """A model or bundle file is truncated, corrupted or not the expected format."""


class InputError(EdgeError):
    """Run-time input has the wrong name, shape or dtype."""


class CalibrationError(EdgeError):
    """Calibration data is missing, empty or not finite."""


class TargetError(EdgeError):
    """A target profile is malformed, or the model does not fit the target."""


class DeviceError(EdgeError):
    """A device link or device-side failure."""


class EdgeWarning(UserWarning):
    """Base of the SDK's warnings (something ran, but the result deserves a look)."""


class CalibrationWarning(EdgeWarning):
    """A calibration tensor is degenerate (constant or all zero): its scale is a guess."""


class NonFiniteInputWarning(EdgeWarning):
    """A float input holds NaN/Inf and the run was told to go ahead (``allow_nonfinite``)."""
