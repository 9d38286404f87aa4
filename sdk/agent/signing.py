"""Ed25519 signing of a deploy: the host signs, the board checks against the public keys it
trusts.

What is signed is one line per artifact, never the zip itself, so the board can check the
signature before it parses anything::

    edge-deploy-v1
    bundle <sha256 of the .edge file>
    selftest <sha256 of the self-test .npz>

A public key is written as one line ``ed25519:<base64 of the 32 raw bytes>`` (easy to paste
into ``edge agent --trust``); a private key is an unencrypted PKCS#8 PEM file, mode 0600.
A key's id is the first 16 hex digits of the SHA-256 of its raw public bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from pathlib import Path

from sdk.errors import InputError

PREFIX = "ed25519:"
MESSAGE_HEADER = b"edge-deploy-v1\n"
MAX_SIGNATURE_BYTES = 4096


class SignatureError(InputError):
    """A signature is missing, malformed or does not verify."""


def _crypto():
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return ed25519, serialization, InvalidSignature


def key_id(raw_public: bytes) -> str:
    return hashlib.sha256(raw_public).hexdigest()[:16]


def public_text(raw_public: bytes) -> str:
    return PREFIX + base64.b64encode(raw_public).decode()


def parse_public_key(text: str) -> bytes:
    """The 32 raw bytes of a public key given as ``ed25519:BASE64`` (or a path to a file that
    holds that line); InputError says what is wrong."""
    s = text.strip()
    if not s.startswith(PREFIX):
        p = Path(s)
        if p.is_file() and p.stat().st_size < 4096:
            s = p.read_text(errors="replace").strip()
        if not s.startswith(PREFIX):
            raise InputError(f"trusted key {text[:60]!r} is not an 'ed25519:BASE64' public key "
                             "or a file holding one (make one with `edge keys generate`)")
    try:
        raw = base64.b64decode(s[len(PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"trusted key {s[:60]!r} is not valid base64; copy the whole line "
                         "of the .pub file `edge keys generate` wrote") from None
    if len(raw) != 32:
        raise InputError(f"trusted key {s[:60]!r} holds {len(raw)} bytes, not the 32 of an "
                         "Ed25519 public key")
    return raw


def generate_key(path: str | os.PathLike, force: bool = False) -> tuple[Path, Path, str]:
    """Write a new private key to ``path`` (0600) and its public line to ``path.pub``;
    returns (key path, pub path, public line)."""
    ed25519, serialization, _ = _crypto()
    key_path = Path(path)
    pub_path = key_path.with_name(key_path.name + ".pub")
    for p in (key_path, pub_path):
        if p.exists() and not force:
            raise InputError(f"{p} exists; pass --force to replace it or choose another -o")
    if not key_path.parent.is_dir():
        raise InputError(f"{key_path.parent} is not a directory; create it or choose another -o")
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    tmp = key_path.with_name(key_path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.replace(tmp, key_path)
    line = public_text(raw)
    pub_path.write_text(line + "\n")
    return key_path, pub_path, line


def load_private_key(path: str | os.PathLike):
    ed25519, serialization, _ = _crypto()
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such signing key; make one with `edge keys generate`")
    try:
        key = serialization.load_pem_private_key(p.read_bytes()[:65536], password=None)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{p} is not an unencrypted PEM private key ({str(exc).splitlines()[0]}); "
                         "make one with `edge keys generate`") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise InputError(f"{p} holds a {type(key).__name__}, not an Ed25519 key; make one with "
                         "`edge keys generate`")
    return key


def message(bundle_sha256: str, selftest_sha256: str) -> bytes:
    return MESSAGE_HEADER + f"bundle {bundle_sha256}\nselftest {selftest_sha256}\n".encode()


def sign(key_path: str | os.PathLike, bundle_sha256: str, selftest_sha256: str) -> bytes:
    """The signature document (JSON bytes) for one deploy."""
    _, serialization, _ = _crypto()
    key = load_private_key(key_path)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    sig = key.sign(message(bundle_sha256, selftest_sha256))
    return json.dumps({"scheme": "ed25519", "key_id": key_id(raw),
                       "signature": base64.b64encode(sig).decode()}).encode()


def verify(doc: bytes, trusted: list[bytes], bundle_sha256: str, selftest_sha256: str) -> str:
    """Check a signature document against the trusted raw public keys; returns the signing
    key's id or raises SignatureError (one line)."""
    ed25519, _, invalid = _crypto()
    if not doc:
        raise SignatureError("the deploy is not signed and this device only accepts signed "
                             "bundles; deploy with --sign KEY (a key the device trusts)")
    if len(doc) > MAX_SIGNATURE_BYTES:
        raise SignatureError(f"the signature part holds {len(doc):,} bytes, over "
                             f"{MAX_SIGNATURE_BYTES:,}; it is not an edge signature")
    try:
        d = json.loads(doc)
        if d.get("scheme") != "ed25519":
            raise ValueError("scheme")
        sig = base64.b64decode(d["signature"], validate=True)
        kid = str(d.get("key_id", ""))
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        raise SignatureError("the signature part is not an edge Ed25519 signature document; "
                             "sign with `edge deploy --sign KEY`") from None
    msg = message(bundle_sha256, selftest_sha256)
    for raw in trusted:
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(raw).verify(sig, msg)
            return key_id(raw)
        except invalid:
            continue
        except ValueError:
            continue
    known = ", ".join(key_id(r) for r in trusted)
    raise SignatureError(f"bad signature: it does not verify against any key this device "
                         f"trusts (signed as key {kid[:16] or '?'}; trusted: {known}); the "
                         "bundle was altered after signing or signed with another key")
