"""``edge export MODEL.edge --format mender|rauc|swupdate``: fleet OTA artifacts that hand a
model to the board's ``edge agent`` (which still checks the signature, installs into its A/B
slots, runs the health check and commits or rolls back).

Every artifact carries the same three files as ``edge deploy`` sends: ``model.edge``,
``selftest.npz`` (reference outputs, computed here) and, with a signing key,
``signature.json`` (Ed25519 over both). On the board an installer step posts them to the
agent on loopback (``edge deploy ... --signature``), reading the token from the agent's root.

* **mender** — a Mender artifact, format version 3, one payload of the Update Module type
  ``edge-model`` (the module script is ``sdk/agent/mender-edge-model``; ``edge agent
  --install-service`` puts it in /usr/share/mender/modules/v3/ when Mender is there). Written
  here in Python; checked with ``mender-artifact validate`` / ``read``.
* **rauc** — a RAUC bundle in the ``plain`` format: a squashfs image (``mksquashfs``) of the
  manifest, the files and an install hook, followed by a detached CMS signature (``--cms-cert``
  / ``--cms-key``, signed with ``cryptography``) and its 8-byte size. Checked with ``rauc
  info --keyring CA``.
* **swupdate** — an SWUpdate ``.swu``: a ``newc`` cpio archive (CRC variant) with
  ``sw-description`` first, then its detached CMS signature ``sw-description.sig`` when
  ``--cms-cert/--cms-key`` are given (Debian's swupdate is built for signed images), the files
  (with their SHA-256) and a post-install script. Checked with ``swupdate -c -i -k CA``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import tarfile
import tempfile
from pathlib import Path

import sdk
from sdk.errors import InputError

FORMATS = ("mender", "rauc", "swupdate")
MENDER_TYPE = "edge-model"
INSTALL_SCRIPT = """#!/bin/sh
# Hand an edge model to the edge agent on this board (it verifies, health-checks, commits or
# rolls back). $1: the directory holding model.edge, selftest.npz and maybe signature.json.
set -eu
D="$1"
ROOT="${EDGE_AGENT_ROOT:-/var/lib/edge-agent}"
EDGE_DEVICE_TOKEN="$(cat "$ROOT/token")"
export EDGE_DEVICE_TOKEN
SIG=""
if [ -f "$D/signature.json" ]; then SIG="--signature $D/signature.json"; fi
# shellcheck disable=SC2086
exec ${EDGE_CLI:-edge} deploy "$D/model.edge" --selftest "$D/selftest.npz" $SIG \\
    --device "${EDGE_DEVICE:-http://127.0.0.1:4910}"
"""


def _payload(model: Path, sign_key: str | os.PathLike | None) -> tuple[dict[str, bytes], str]:
    from sdk.agent.client import prepare_deploy

    data, st, sig, name = prepare_deploy(model, sign_key)
    files = {"model.edge": data, "selftest.npz": st}
    if sig is not None:
        files["signature.json"] = sig
    return files, name


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _tar_bytes(members: dict[str, bytes], gz: bool) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w", format=tarfile.GNU_FORMAT) as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_mender(files: dict[str, bytes], name: str, out: Path, device_types: list[str],
                 artifact_name: str) -> None:
    version = json.dumps({"format": "mender", "version": 3}).encode()
    header_info = {"payloads": [{"type": MENDER_TYPE}],
                   "artifact_provides": {"artifact_name": artifact_name},
                   "artifact_depends": {"device_type": device_types}}
    type_info = {"type": MENDER_TYPE,
                 "artifact_provides": {f"rootfs-image.{MENDER_TYPE}.version": artifact_name},
                 "clears_artifact_provides": [f"rootfs-image.{MENDER_TYPE}.*"]}
    header = _tar_bytes({"header-info": json.dumps(header_info).encode(),
                         "headers/0000/type-info": json.dumps(type_info).encode(),
                         "headers/0000/meta-data": json.dumps(
                             {"edge_model": name, "sdk_version": sdk.__version__}).encode()},
                        gz=True)
    data = _tar_bytes(files, gz=True)
    sums = {"version": _sha(version), "header.tar.gz": _sha(header)}
    sums.update({f"data/0000/{k}": _sha(v) for k, v in files.items()})
    manifest = "".join(f"{sums[k]}  {k}\n" for k in sorted(sums)).encode()
    out.write_bytes(_tar_bytes({"version": version, "manifest": manifest,
                                "header.tar.gz": header, "data/0000.tar.gz": data}, gz=False))


def _cpio_newc_crc(members: list[tuple[str, bytes, int]]) -> bytes:
    """A cpio archive in the ``newc`` format with checksums (magic 070702)."""
    out = io.BytesIO()

    def entry(ino: int, name: str, data: bytes, mode: int) -> None:
        nameb = name.encode() + b"\0"
        check = sum(data) & 0xFFFFFFFF
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nameb), check)
        out.write(b"070702" + b"".join(f"{v:08X}".encode() for v in fields))
        out.write(nameb)
        out.write(b"\0" * (-out.tell() % 4))
        out.write(data)
        out.write(b"\0" * (-out.tell() % 4))

    for i, (name, data, mode) in enumerate(members, 1):
        entry(i, name, data, mode)
    entry(0, "TRAILER!!!", b"", 0)
    out.write(b"\0" * (-out.tell() % 512))
    return out.getvalue()


def write_swupdate(files: dict[str, bytes], name: str, out: Path, incoming: str,
                   hardware: list[str] | None, cert: str | None = None,
                   key: str | None = None) -> None:
    script = ("#!/bin/sh\n# SWUpdate post-install of an edge model\n"
              "case \"$1\" in postinst) ;; *) exit 0 ;; esac\n"
              + INSTALL_SCRIPT.split("\n", 1)[1].replace('D="$1"', f'D="{incoming}"'))
    script_b = script.encode()
    lines = ["software =", "{", f'\tversion = "{sdk.__version__}";',
             f'\tdescription = "edge model {name}";']
    if hardware:
        lines.append("\thardware-compatibility: [ " + ", ".join(f'"{h}"' for h in hardware)
                     + " ];")
    lines.append("\tfiles: (")
    items = []
    for fname, data in files.items():
        items.append("\t\t{\n" f'\t\t\tfilename = "{fname}";\n'
                     f'\t\t\tpath = "{incoming}/{fname}";\n'
                     '\t\t\tcreate-destination = true;\n'
                     f'\t\t\tsha256 = "{_sha(data)}";\n' "\t\t}")
    lines.append(",\n".join(items))
    lines.append("\t);")
    lines += ["\tscripts: (", "\t\t{", '\t\t\tfilename = "edge-install.sh";',
              '\t\t\ttype = "shellscript";', f'\t\t\tsha256 = "{_sha(script_b)}";', "\t\t}",
              "\t);", "}", ""]
    desc = "\n".join(lines).encode()
    members = [("sw-description", desc, 0o100644)]
    if cert or key:
        if not (cert and key):
            raise InputError("--cms-cert and --cms-key go together")
        members.append(("sw-description.sig", cms_sign(desc, cert, key), 0o100644))
    members += [(k, v, 0o100644) for k, v in files.items()]
    members.append(("edge-install.sh", script_b, 0o100755))
    out.write_bytes(_cpio_newc_crc(members))


def cms_sign(data: bytes, cert: str, key: str) -> bytes:
    """A detached CMS (PKCS#7) signature of ``data``, DER, by the PEM ``cert`` / ``key``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.serialization import pkcs7

    try:
        certificate = x509.load_pem_x509_certificate(Path(cert).read_bytes())
        private = serialization.load_pem_private_key(Path(key).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(f"cannot load --cms-cert/--cms-key ({str(exc).splitlines()[0]}); "
                         "give PEM files") from None
    try:
        return (pkcs7.PKCS7SignatureBuilder().set_data(data)
                .add_signer(certificate, private, hashes.SHA256())
                .sign(serialization.Encoding.DER,
                      [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary]))
    except (ValueError, TypeError) as exc:
        raise InputError(f"cannot sign with --cms-cert/--cms-key ({exc}); the key must be the "
                         "certificate's RSA or EC key") from None


def write_rauc(files: dict[str, bytes], name: str, out: Path, compatible: str,
               cert: str | None, key: str | None) -> None:
    if not cert or not key:
        raise InputError("a RAUC bundle must be signed: pass --cms-cert and --cms-key (a "
                         "certificate the board's RAUC keyring trusts, and its key)")
    mksquashfs = shutil.which("mksquashfs")
    if mksquashfs is None:
        raise InputError("mksquashfs is not installed (Debian: apt-get install squashfs-tools); "
                         "RAUC bundles are squashfs images")
    hook = ("#!/bin/sh\n# RAUC hook of an edge model bundle\n"
            "case \"$1\" in slot-install) ;; *) exit 0 ;; esac\n"
            + INSTALL_SCRIPT.split("\n", 1)[1].replace('D="$1"', 'D="$RAUC_BUNDLE_MOUNT_POINT"'))
    version = f"{sdk.__version__}+{_sha(files['model.edge'])[:12]}"
    manifest = "\n".join([
        "[update]", f"compatible={compatible}", f"version={version}",
        f"description=edge model {name}", "",
        "[bundle]", "format=plain", "",
        "[hooks]", "filename=edge-hook.sh", "",
        "[image.edge-model]", "filename=model.edge",
        f"sha256={_sha(files['model.edge'])}", f"size={len(files['model.edge'])}",
        "hooks=install", ""])
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "content"
        d.mkdir()
        (d / "manifest.raucm").write_text(manifest)
        for k, v in files.items():
            (d / k).write_bytes(v)
        (d / "edge-hook.sh").write_text(hook)
        os.chmod(d / "edge-hook.sh", 0o755)
        img = Path(tmp) / "bundle.sqfs"
        r = subprocess.run([mksquashfs, str(d), str(img), "-all-root", "-noappend",
                            "-no-progress", "-no-xattrs", "-quiet"],
                           capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise InputError(f"mksquashfs failed: {(r.stderr or r.stdout).strip()[-200:]}")
        squash = img.read_bytes()
    sig = cms_sign(squash, cert, key)
    out.write_bytes(squash + sig + struct.pack(">Q", len(sig)))


def export(model: str | os.PathLike, fmt: str, out: str | os.PathLike,
           sign_key: str | os.PathLike | None = None, device_types: tuple[str, ...] = (),
           cms_cert: str | None = None, cms_key: str | None = None,
           compatible: str = "edge-model", incoming: str = "/var/lib/edge-agent/incoming"
           ) -> Path:
    """Write ``model`` as a ``fmt`` artifact to ``out``; returns the path."""
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt!r} is not one of {list(FORMATS)}")
    out = Path(out)
    if not out.parent.is_dir():
        raise InputError(f"{out.parent} is not a directory; create it or choose another -o")
    files, name = _payload(Path(model), sign_key)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        if fmt == "mender":
            write_mender(files, name, tmp, list(device_types) or ["raspberrypi4"],
                         f"{name}-{_sha(files['model.edge'])[:12]}")
        elif fmt == "swupdate":
            write_swupdate(files, name, tmp, incoming, list(device_types) or ["1.0"], cms_cert,
                           cms_key)
        else:
            write_rauc(files, name, tmp, compatible, cms_cert, cms_key)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
