"""MTCE keys: 256-bit secrets with their cipher parameters, derivation and key files.

- A :class:`Key` is a 256-bit secret plus the :class:`CipherParams` it is for.
- ``kind="master"``: the data owner's secret; :meth:`Key.for_image` derives each image's key
  with HKDF-SHA256 (info = image id), so the owner stores one secret and can release one
  image's key without revealing any other.
- ``kind="image"``: the key of one image (the paper's per-image keys).
- ``kind="shared"``: one key used for every image (needed by key-aware models; weaker, see the
  security chapter).

Secrets come from the OS's cryptographic RNG (:func:`generate`). Reproducible experiments may
derive them from an integer seed (:func:`from_seed`); such keys say so (``from_seed=True``) and
must never protect real data. Key material (permutations, substitution bytes, channel orders) is
expanded from a secret with AES-256-CTR (:func:`keystream`), never with ``random``/``np.random``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_FILE_FORMAT = "cbirlib-mtce-key"
KEY_FILE_VERSION = 2
#: key file versions this cbirlib reads (version 1 files predate key expansion 2: their keys
#: expand with version 1, so ciphertexts made with them still decrypt)
KEY_FILE_VERSIONS = (1, 2)
#: key expansion versions (:mod:`cbirlib.core.keyexpansion`): 1 sorts 64-bit random keys, 2 shuffles
#: with Fisher-Yates (the default since 2026-12; it gives other ciphertexts for the same key)
EXPANSIONS = (1, 2)
KINDS = ("master", "image", "shared")
#: bits per pixel value a key encrypts
DEPTHS = (8, 16)
_INFO = b"cbirlib/mtce/v1/"


class KeyUsageError(ValueError):
    """A key is unusable for what was asked (wrong kind, wrong parameters)."""


class KeyFileError(ValueError):
    """A key file is missing, truncated, corrupted or of another format/version."""


@dataclass(frozen=True)
class CipherParams:
    """MTCE parameters.

    Attributes:
        block_size: block side in pixels (the paper's "8 blocks" = 8x8 px, "1 block" = 1x1 px).
        strength: substitution bytes are drawn uniformly from 0..strength and added mod 256 per
            block and channel (Table III "RGB channel substitution"); 0 disables substitution.
        swap: permute the colour channels per block (one of the 3! orders; ignored for grey).
        expansion: how the key is expanded into permutations (:data:`EXPANSIONS`); the same key
            gives another ciphertext under another version. A record without this field (key
            files of version 1, older encrypted folders and stores) means version 1.
        depth: bits per pixel value the key encrypts (:data:`DEPTHS`): 8 (uint8 images, the
            paper's) or 16 (uint16 images: medical 12-16-bit pixels, substitution values drawn
            from 0..strength, up to 65535, added mod 2^16). A record without it means 8.
    """

    block_size: int = 8
    strength: int = 255
    swap: bool = True
    expansion: int = 2
    depth: int = 8

    def __post_init__(self) -> None:
        if not isinstance(self.block_size, (int, np.integer)) or isinstance(self.block_size, bool) \
                or not 1 <= self.block_size <= 256:
            raise ValueError(f"block_size must be an integer in 1..256, got {self.block_size!r}")
        if isinstance(self.depth, bool) or self.depth not in DEPTHS:
            raise ValueError(f"depth must be one of {DEPTHS} bits, got {self.depth!r}")
        top = 2 ** self.depth - 1
        if not isinstance(self.strength, (int, np.integer)) or isinstance(self.strength, bool) \
                or not 0 <= self.strength <= top:
            raise ValueError(f"strength must be an integer in 0..{top} for {self.depth}-bit values, "
                             f"got {self.strength!r}")
        if not isinstance(self.swap, bool):
            raise ValueError(f"swap must be True or False, got {self.swap!r}")
        if isinstance(self.expansion, bool) or self.expansion not in EXPANSIONS:
            raise ValueError(f"expansion must be one of {EXPANSIONS}, got {self.expansion!r}")

    def record(self) -> dict:
        """The parameters as a dict (key files, metadata, the key-expansion label); ``depth`` only
        when 16, so that every 8-bit record, key file and ciphertext stays what it was."""
        out = {"block_size": int(self.block_size), "strength": int(self.strength), "swap": self.swap,
               "expansion": int(self.expansion)}
        return out | ({"depth": int(self.depth)} if self.depth != 8 else {})

    @classmethod
    def from_record(cls, record: dict) -> CipherParams:
        """Inverse of :meth:`record`; a record written before key expansion 2 means version 1."""
        if not isinstance(record, dict):
            raise ValueError(f"cipher parameters must be a mapping, got {type(record).__name__}")
        return cls(**({"expansion": 1} | record))


@dataclass(frozen=True)
class Key:
    """A 256-bit secret and the cipher parameters it is for. ``repr`` never shows the secret."""

    secret: bytes = field(repr=False)
    params: CipherParams = CipherParams()
    kind: str = "image"
    image_id: str | None = None
    from_seed: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.secret, bytes) or len(self.secret) != 32:
            raise KeyUsageError("a key secret must be 32 bytes (256 bits)")
        if self.kind not in KINDS:
            raise KeyUsageError(f"key kind must be one of {KINDS}, got {self.kind!r}")

    def fingerprint(self) -> str:
        """16 hex digits that identify the key (HMAC of a constant); reveal nothing usable."""
        return hmac.new(self.secret, _INFO + b"fingerprint", hashlib.sha256).hexdigest()[:16]

    def for_image(self, image_id: str) -> Key:
        """The per-image key of ``image_id`` (master keys only): HKDF-SHA256(secret, info=id)."""
        if self.kind != "master":
            raise KeyUsageError(f"only a master key derives per-image keys; this key is {self.kind!r}")
        if not isinstance(image_id, str) or not image_id:
            raise KeyUsageError(f"image ids must be non-empty strings, got {image_id!r}")
        return Key(_hkdf(self.secret, b"image-key/" + image_id.encode("utf-8")), self.params, "image",
                   image_id, self.from_seed)

    def for_group(self, group: int = 0) -> Key:
        """The shared key of image group ``group`` (master keys only; group 0: the one key that
        all images share in shared mode): HKDF-SHA256(secret, info="shared-key[/group]")."""
        if isinstance(group, bool) or not isinstance(group, (int, np.integer)) or group < 0:
            raise KeyUsageError(f"a group is an integer >= 0, got {group!r}")
        name = "shared-key" if group == 0 else f"shared-key/{int(group)}"
        return Key(self.for_image(name).secret, self.params, "shared", None, self.from_seed)

    def with_params(self, params: CipherParams) -> Key:
        return replace(self, params=params)

    def derived(self, label: str, params: CipherParams) -> Key:
        """Another key of the same kind and image for ``params``, whose secret is
        HKDF-SHA256(secret, info=label): a separate key for a separate use of this one (the
        permutations of a 16-bit key, say), revealing nothing of it."""
        return replace(self, secret=_hkdf(self.secret, b"derived/" + label.encode("utf-8")), params=params)

    def record(self) -> dict:
        """Public description (no secret) for provenance."""
        return {"kind": self.kind, "params": self.params.record(), "fingerprint": self.fingerprint(),
                "from_seed": self.from_seed, "image_id": self.image_id}


def _hkdf(secret: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=_INFO + info).derive(secret)


def generate(params: CipherParams = CipherParams(), kind: str = "master") -> Key:
    """A fresh key from the operating system's cryptographic RNG (``secrets.token_bytes``)."""
    return Key(secrets.token_bytes(32), params, kind)


def from_seed(seed: int, params: CipherParams = CipherParams(), kind: str = "master") -> Key:
    """A reproducible key derived from an integer seed (HKDF). For experiments only: anyone who
    knows the seed knows the key. The key records ``from_seed=True``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise KeyUsageError(f"seed must be an integer, got {seed!r}")
    return Key(_hkdf(str(int(seed)).encode(), b"seed/" + kind.encode()), params, kind, None, True)


#: The keys of an experiment, by role, each derived from the run's seed (experiments only: anyone
#: who knows the seed knows them): role -> (seed offset, kind). The offsets are those the committed
#: results were made with. Kind "image" is the per-image key named after the role under a master
#: key of that offset; "fresh" takes an index r >= 1 (offset 1000 + r).
EXPERIMENT_ROLES = {
    "owner": (0, "master"),              # the data owner's master key: per-image keys
    "shared": (0, "shared"),             # the one key of shared mode (and of baseline bytes)
    "unrelated": (1, "shared"),          # a key that has nothing to do with the owner's: a guess
    "wrong user": (7, "shared"),         # a query user who holds the wrong shared key
    "query user": (1_000_003, "image"),  # the query user's own per-image key
    "fresh": (1000, "master"),           # fresh master keys for training on more ciphertexts
}


def experiment_key(seed: int, role: str, params: CipherParams = CipherParams(), *, index: int = 0) -> Key:
    """The seeded key of ``role`` (:data:`EXPERIMENT_ROLES`) in the experiment of ``seed``.

    >>> experiment_key(0, "owner") == from_seed(0)
    True
    >>> experiment_key(0, "query user").kind, experiment_key(0, "fresh", index=2) == from_seed(1002)
    ('image', True)
    """
    if role not in EXPERIMENT_ROLES:
        raise KeyUsageError(f"unknown key role {role!r}; one of {sorted(EXPERIMENT_ROLES)}")
    if (role == "fresh") != (index > 0):
        raise KeyUsageError("a fresh key takes index >= 1, other roles none")
    offset, kind = EXPERIMENT_ROLES[role]
    if kind == "image":
        return from_seed(seed + offset, params, "master").for_image(role)
    return from_seed(seed + offset + index, params, kind)


def keystream_row_bytes(nbytes: int) -> int:
    """Row length of a :func:`keystreams` buffer: 16-byte aligned plus the 16 bytes of slack
    that ``update_into`` asks for."""
    return -(-nbytes // 16) * 16 + 16


_ZEROS = b""


def _zeros(nbytes: int) -> memoryview:
    """``nbytes`` zero bytes (CTR mode's keystream is the encryption of zeros), from one immutable
    buffer grown as needed (a fresh 318 kB bytes object per image measured 1-7 us of a ~45 us
    keystream, 2026-12-02)."""
    global _ZEROS
    if len(_ZEROS) < nbytes:
        _ZEROS = bytes(nbytes)
    return memoryview(_ZEROS)[:nbytes]


def keystreams(secrets_: list[bytes], nbytes: int, label: bytes = b"expand",
               out: np.ndarray | None = None) -> np.ndarray:
    """(N, nbytes) uint8: row i is AES-256-CTR keystream under ``secrets_[i]`` (nonce from
    ``label``). Written in place into ``out`` (N, :func:`keystream_row_bytes`) when given; the
    rows are 16-byte aligned views into one buffer."""
    nonce = hashlib.sha256(_INFO + label).digest()[:16]
    row = keystream_row_bytes(nbytes)
    buf = np.empty((len(secrets_), row), dtype=np.uint8) if out is None else out
    if buf.shape != (len(secrets_), row) or buf.dtype != np.uint8:
        raise ValueError(f"keystream buffer must be uint8 of shape {(len(secrets_), row)}")
    zeros = _zeros(nbytes)
    for i, secret in enumerate(secrets_):
        Cipher(algorithms.AES(secret), modes.CTR(nonce)).encryptor().update_into(zeros, buf[i])
    return buf[:, :nbytes]


def keystream(secret: bytes, nbytes: int, label: bytes = b"expand") -> np.ndarray:
    """``nbytes`` pseudo-random bytes: AES-256-CTR under ``secret`` (nonce from ``label``)."""
    return keystreams([secret], nbytes, label)[0]


# --------------------------------------------------------------------------- key files

def _payload(key: Key) -> dict:
    return {"format": KEY_FILE_FORMAT, "version": KEY_FILE_VERSION, "kind": key.kind,
            "secret": key.secret.hex(), "params": key.params.record(), "image_id": key.image_id,
            "from_seed": key.from_seed}


def _checksum(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def dumps(key: Key) -> str:
    """Key file text: versioned JSON with a sha256 integrity check."""
    payload = _payload(key)
    return json.dumps(payload | {"sha256": _checksum(payload)}, indent=2, sort_keys=True) + "\n"


def loads(text: str, source: str = "key") -> Key:
    """Parse key file text; any damage is a :class:`KeyFileError` that says what is wrong."""
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise KeyFileError(f"{source}: not a key file or truncated ({e.msg if hasattr(e, 'msg') else e})") from None
    if not isinstance(obj, dict) or obj.get("format") != KEY_FILE_FORMAT:
        raise KeyFileError(f"{source}: not a {KEY_FILE_FORMAT} file")
    if obj.get("version") not in KEY_FILE_VERSIONS:
        raise KeyFileError(f"{source}: key file version {obj.get('version')!r}; this cbirlib reads "
                           f"versions {', '.join(map(str, KEY_FILE_VERSIONS))}")
    stored = obj.pop("sha256", None)
    if stored != _checksum(obj):
        raise KeyFileError(f"{source}: integrity check failed (the key file was modified or corrupted)")
    try:
        params = CipherParams.from_record(obj["params"])
        if obj["version"] == 1 and params.expansion != 1:
            raise ValueError("a version 1 key file cannot name a key expansion")
        return Key(bytes.fromhex(obj["secret"]), params, obj["kind"],
                   obj.get("image_id"), bool(obj.get("from_seed", False)))
    except (KeyError, TypeError, ValueError) as e:
        raise KeyFileError(f"{source}: invalid key contents ({e})") from None


def save(key: Key, path: str | Path) -> Path:
    """Write a key file readable by its owner alone (mode 0600 from the moment it exists: created
    so under a temporary name beside it, then renamed into place)."""
    import os
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(dumps(key))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def check_private(path: str | Path) -> None:
    """Refuse a key file that group or others may read (like ssh does with private keys), with the
    command that fixes it. POSIX systems only."""
    import os
    import stat

    if os.name != "posix":
        return
    mode = Path(path).stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"key file {path} can be read by others (mode {stat.S_IMODE(mode):04o}); a key is a "
                           f"secret: run `chmod 600 {path}` (or pass --allow-shared-key-file where that is meant)")


def load(path: str | Path, *, allow_shared: bool = False) -> Key:
    """Read a key file; one that group or others may read is refused unless ``allow_shared``
    (:func:`check_private`)."""
    path = Path(path)
    try:
        if not allow_shared:
            check_private(path)
        text = path.read_text()
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise KeyFileError(f"cannot read key file {path}: {e}") from None
    return loads(text, str(path))
