"""The board's A/B model slots on disk, and how they survive a power cut.

Layout under the agent's root::

    active.json        the pointer: {"active": "a"|"b"|null, "previous": ..., "state":
                       "committed"|"trial", "event": {...last deploy/rollback and why}}
    slots/a/, slots/b/ model.edge, selftest.npz, signature.json, meta.json (written last:
                       the SHA-256 of each file, the model name, who signed it, when)
    staging/           uploads being received (cleared on start)

Rules that keep a whole model active whatever moment the power goes:

* a deploy writes only the *inactive* slot: its meta.json is removed first, every file is
  fsynced, meta.json is written last (fsynced), then the slot directory is fsynced;
* the pointer is replaced atomically (write a temporary file, fsync, ``os.replace``, fsync the
  directory), so it is always the old or the new record, never a torn one;
* a new slot becomes active in state ``trial``; only a passing health check turns it into
  ``committed``. On start, a ``trial`` pointer means the agent died before the health check
  committed: it rolls back to the previous slot and keeps the reason;
* on start the active slot is verified (each file's SHA-256 against meta.json, then the bundle
  itself with :func:`sdk.load_bundle`); if it fails, the previous committed slot is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

SLOTS = ("a", "b")
FILES = ("model.edge", "selftest.npz", "signature.json")
POINTER = "active.json"
META = "meta.json"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new content."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class SlotStore:
    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.slots_dir = self.root / "slots"
        self.staging = self.root / "staging"
        for d in (self.root, self.slots_dir, self.staging,
                  *(self.slots_dir / s for s in SLOTS)):
            d.mkdir(parents=True, exist_ok=True)

    # -- the pointer ---------------------------------------------------------------------
    def pointer(self) -> dict[str, Any]:
        p = self.root / POINTER
        if not p.exists():
            return {"active": None, "previous": None, "state": "committed", "event": None}
        return json.loads(p.read_text())

    def set_pointer(self, active: str | None, previous: str | None, state: str,
                    event: dict[str, Any] | None) -> dict[str, Any]:
        rec = {"active": active, "previous": previous, "state": state, "event": event,
               "written_at": _now()}
        write_atomic(self.root / POINTER, json.dumps(rec, indent=1).encode())
        return rec

    def slot_path(self, slot: str) -> Path:
        if slot not in SLOTS:
            raise ValueError(f"no slot {slot!r}")
        return self.slots_dir / slot

    def inactive(self) -> str:
        return "b" if self.pointer().get("active") == "a" else "a"

    # -- slots ---------------------------------------------------------------------------
    def meta(self, slot: str) -> dict[str, Any] | None:
        p = self.slot_path(slot) / META
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError):
            return None

    def verify(self, slot: str | None) -> tuple[bool, str]:
        """(True, "") when ``slot`` holds a whole model: meta.json, each file's SHA-256, and
        the bundle loads (zip, format, every part's SHA-256)."""
        if slot is None:
            return False, "no slot"
        meta = self.meta(slot)
        if meta is None:
            return False, f"slot {slot} has no meta.json (empty or partly written)"
        d = self.slot_path(slot)
        for name, want in meta.get("sha256", {}).items():
            if name not in FILES:
                return False, f"slot {slot}: meta.json names an unknown file {name!r}"
            f = d / name
            if not f.is_file():
                return False, f"slot {slot}: {name} is missing"
            if sha256_file(f) != want:
                return False, f"slot {slot}: {name} does not match its SHA-256 in meta.json"
        if "model.edge" not in meta.get("sha256", {}):
            return False, f"slot {slot}: meta.json lists no model.edge"
        from sdk.compile.bundle import load_bundle
        from sdk.errors import EdgeError

        try:
            load_bundle(d / "model.edge")
        except EdgeError as exc:
            return False, f"slot {slot}: {exc}"
        return True, ""

    def install(self, slot: str, files: dict[str, Path], meta: dict[str, Any]) -> None:
        """Copy the staged ``files`` (name in FILES -> path) into ``slot``, durably; meta.json
        last."""
        d = self.slot_path(slot)
        m = d / META
        if m.exists():
            m.unlink()
            fsync_dir(d)
        for old in d.iterdir():  # whatever the slot held before
            if old.is_dir():
                shutil.rmtree(old)
            else:
                old.unlink()
        sha = {}
        for name, src in files.items():
            if name not in FILES:
                raise ValueError(f"not a slot file: {name!r}")
            dst = d / name
            with open(src, "rb") as fi, open(dst, "wb") as fo:
                shutil.copyfileobj(fi, fo, 1 << 20)
                fo.flush()
                os.fsync(fo.fileno())
            sha[name] = sha256_file(dst)
        fsync_dir(d)
        write_atomic(m, json.dumps(dict(meta, sha256=sha, slot=slot, installed_at=_now()),
                                   indent=1).encode())

    def mark_committed(self, slot: str) -> None:
        meta = self.meta(slot) or {}
        write_atomic(self.slot_path(slot) / META,
                     json.dumps(dict(meta, committed=True, committed_at=_now()), indent=1).encode())

    def clear_staging(self) -> None:
        for p in self.staging.iterdir():
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)

    # -- start-up recovery ---------------------------------------------------------------
    def recover(self) -> tuple[dict[str, Any], list[str]]:
        """Bring the pointer back to a whole, verified, committed model (or none); returns the
        pointer and what was done (log lines)."""
        done: list[str] = []
        self.clear_staging()
        try:
            ptr = self.pointer()
        except (OSError, ValueError) as exc:  # cannot happen with atomic replace; still handled
            done.append(f"the pointer {POINTER} is unreadable ({exc}); looking for a slot")
            ptr = {"active": None, "previous": None, "state": "committed", "event": None}
            for s in SLOTS:
                if self.verify(s)[0] and (self.meta(s) or {}).get("committed"):
                    ptr["active"] = s
                    break
        active, previous = ptr.get("active"), ptr.get("previous")
        if ptr.get("state") == "trial":
            meta = self.meta(active) if active in SLOTS else None
            name = (meta or {}).get("model_name", "?")
            reason = (f"the agent stopped during the health check of {name!r} in slot "
                      f"{active}; it was never committed")
            ok, why = self.verify(previous) if previous else (False, "no previous slot")
            target = previous if ok else None
            event = {"kind": "rollback", "at": _now(), "reason": reason, "failed_slot": active,
                     "model_name": name, "to_slot": target}
            if not ok and previous:
                event["reason"] += f"; the previous slot is not whole either ({why})"
            ptr = self.set_pointer(target, None, "committed", event)
            done.append(f"rolled back: {reason} -> slot {target}")
            active, previous = target, None
        if active is not None:
            ok, why = self.verify(active)
            if not ok:
                alt_ok, _ = self.verify(previous) if previous else (False, "")
                target = previous if alt_ok else None
                event = {"kind": "rollback", "at": _now(), "to_slot": target,
                         "reason": f"the active slot failed verification at start ({why})"}
                ptr = self.set_pointer(target, None, "committed", event)
                done.append(f"active slot {active} failed verification ({why}) -> slot {target}")
        return ptr, done
