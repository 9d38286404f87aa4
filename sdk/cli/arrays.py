"""Reading and writing the CLI's NumPy files (.npz keyed by tensor name, .npy for one tensor)
with one-line errors."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from sdk.errors import EdgeError, InputError


def load_arrays(path: str | Path, names: list[str], error: type[EdgeError] = InputError,
                what: str = "input") -> dict[str, np.ndarray]:
    """``.npz`` → dict name → array; ``.npy`` → the single name in ``names``."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} file {path} does not exist")
    try:
        if path.suffix.lower() == ".npy":
            arr = np.load(path, allow_pickle=False)
            if len(names) != 1:
                raise error(f"{path} holds one array but the model has {len(names)} inputs "
                            f"{names}; pass an .npz keyed by input name")
            return {names[0]: arr}
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise error(f"{path} is not an .npz archive; save {what}s with numpy.savez")
            return {k: z[k] for k in z.files}
    except EdgeError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise error(f"cannot read {what} file {path} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                    "save it with numpy.savez / numpy.save") from None
