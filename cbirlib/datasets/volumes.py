"""The real 3-D scans behind the default dataset, and how each is read, windowed and sliced.

Each :class:`VolumeSource` turns one asset (see :mod:`cbirlib.datasets.assets`) into a float32 array
in RAS-like voxel order (x, y, z) with its voxel spacing in mm, a window that maps it to
uint8, an organ mask that decides which slices show enough of the class, and a body mask whose
bounding box crops every slice of that volume the same way.
"""

from __future__ import annotations

import gzip
import json
import plistlib
import tarfile
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import assets

#: plane name -> the array axis that is held fixed in an (x, y, z) volume
PLANES = {"sagittal": 0, "coronal": 1, "axial": 2}


@dataclass(frozen=True)
class Volume:
    data: np.ndarray  # float32 (X, Y, Z)
    spacing: tuple[float, float, float]  # mm per voxel along X, Y, Z


@dataclass(frozen=True)
class VolumeSource:
    """One scan of one class.

    Attributes:
        volume: id of the scan (the asset name).
        label: class folder name (``chest``, ``brain`` or ``bone``).
        modality: e.g. ``"CT, lung window"``.
        load: reads the asset -> :class:`Volume`.
        window: float volume -> uint8 volume (same shape).
        organ: (volume, raw data) -> bool mask of the voxels that count as the class's organ.
        min_fraction: a slice is kept when at least this share of its voxels is organ.
        body_threshold: raw values above it are "body" (for the crop box).
        simulated: whether the images are simulated rather than acquired.
        patient: who was scanned (every volume here is a different person or template).
        extra_assets: further assets ``load`` or ``organ`` read (masks, headers).
    """

    volume: str
    label: str
    modality: str
    load: Callable[[], Volume]
    window: Callable[[np.ndarray], np.ndarray]
    organ: Callable[[np.ndarray], np.ndarray]
    min_fraction: float
    body_threshold: float
    simulated: bool = False
    patient: str = ""
    extra_assets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.patient:
            object.__setattr__(self, "patient", self.volume)

    @property
    def asset(self) -> assets.Asset:
        return assets.ASSETS[self.volume]

    @property
    def assets(self) -> tuple[str, ...]:
        """Every asset this volume is built from."""
        return (self.volume, *self.extra_assets)


def _nifti(name: str) -> Callable[[], Volume]:
    def load() -> Volume:
        import nibabel as nib

        img = nib.as_closest_canonical(nib.load(assets.fetch(name)))
        data = np.asarray(img.dataobj, dtype=np.float32)
        return Volume(data, tuple(float(z) for z in img.header.get_zooms()[:3]))

    return load


def _nifti_labels(name: str) -> np.ndarray:
    import nibabel as nib

    return np.asarray(nib.as_closest_canonical(nib.load(assets.fetch(name))).dataobj)


def canonical(data: np.ndarray, directions: np.ndarray) -> Volume:
    """Reorder and flip array axes so that axis k runs along world axis k (RAS: x to the
    right, y to the front, z up) in increasing order.

    Args:
        data: (A, B, C) voxels.
        directions: (3, 3) world-space step (mm) of one voxel along each array axis, in RAS
            (row i = array axis i).
    """
    directions = np.asarray(directions, dtype=float)
    world = np.abs(directions).argmax(axis=1)
    if sorted(world.tolist()) != [0, 1, 2]:
        raise ValueError(f"voxel axes are not aligned with distinct world axes: {directions.tolist()}")
    order = np.argsort(world)
    out = np.transpose(data, order)
    signs = np.sign(directions[order, np.arange(3)])
    out = out[tuple(slice(None, None, -1) if s < 0 else slice(None) for s in signs)]
    spacing = tuple(float(np.linalg.norm(directions[i])) for i in order)
    return Volume(np.ascontiguousarray(out, dtype=np.float32), spacing)


def _nrrd(name: str) -> Callable[[], Volume]:
    """A NRRD volume (pynrrd), its space directions turned into RAS."""
    def load() -> Volume:
        import nrrd

        data, header = nrrd.read(str(assets.fetch(name)))
        space = header.get("space", "right-anterior-superior")
        to_ras = {"left-posterior-superior": (-1.0, -1.0, 1.0), "right-anterior-superior": (1.0, 1.0, 1.0)}
        if space not in to_ras:
            raise ValueError(f"{name}: unsupported NRRD space {space!r}")
        return canonical(data, np.asarray(header["space directions"], dtype=float) * np.array(to_ras[space]))

    return load


_VTK_TYPES = {"Uint8Array": np.uint8, "Int16Array": np.dtype("<i2"), "Uint16Array": np.dtype("<u2"),
              "Float32Array": np.dtype("<f4")}


def _vti(index: str, data: str, flip: tuple[bool, bool, bool] = (False, False, False)) -> Callable[[], Volume]:
    """A vtk.js image (``index.json`` + one gzip-compressed scalar array), x fastest. The file
    states no anatomical orientation; ``flip`` turns the axes so the images read as usual."""
    def load() -> Volume:
        meta = json.loads(assets.fetch(index).read_text())
        arr = meta["pointData"]["arrays"][0]["data"]
        raw = gzip.decompress(assets.fetch(data).read_bytes())
        e = meta["extent"]
        shape = (e[5] - e[4] + 1, e[3] - e[2] + 1, e[1] - e[0] + 1)
        vol = np.frombuffer(raw, _VTK_TYPES[arr["dataType"]]).reshape(shape).transpose(2, 1, 0)
        vol = vol[tuple(slice(None, None, -1) if f else slice(None) for f in flip)]
        return Volume(np.ascontiguousarray(vol, dtype=np.float32), tuple(float(x) for x in meta["spacing"]))

    return load


def _minc_raw(header: str, raw: str) -> Callable[[], Volume]:
    """brainbrowser's MINC export: a JSON header (axis order, lengths, steps) + raw uint8 voxels."""
    def load() -> Volume:
        meta = json.loads(gzip.decompress(assets.fetch(header).read_bytes()))
        order = meta["order"]
        shape = tuple(meta[a]["space_length"] for a in order)
        vol = np.frombuffer(gzip.decompress(assets.fetch(raw).read_bytes()), np.uint8).reshape(shape)
        directions = np.zeros((3, 3))
        for i, a in enumerate(order):
            directions[i, "xyz".index(a[0])] = meta[a]["step"]
        return canonical(vol, directions)

    return load


def load_inv3(path) -> Volume:
    """An InVesalius project (gzip tar of ``main.plist`` + raw ``matrix.dat``) -> (X, Y, Z) volume."""
    with tarfile.open(path, "r:gz") as tar:
        members = {m.name.split("/")[-1]: m for m in tar.getmembers() if m.isfile()}
        try:
            meta = plistlib.loads(tar.extractfile(members["main.plist"]).read())
            raw = tar.extractfile(members[meta["matrix"]["filename"]]).read()
        except KeyError as e:
            raise ValueError(f"{path}: not an InVesalius project (missing {e})") from None
    shape = tuple(meta["matrix"]["shape"])  # (Z, Y, X)
    matrix = np.frombuffer(raw, dtype=np.dtype(meta["matrix"]["dtype"])).reshape(shape)
    # (Z, Y, X) with image rows running posterior -> (X, Y, Z) with Y running anterior.
    data = np.ascontiguousarray(matrix.transpose(2, 1, 0)[:, ::-1, :], dtype=np.float32)
    sx, sy, sz = (float(s) for s in meta["spacing"])
    return Volume(data, (sx, sy, sz))


def window_hu(lo: float, hi: float) -> Callable[[np.ndarray], np.ndarray]:
    """Linear CT window [lo, hi] HU -> 0..255."""
    def apply(v: np.ndarray) -> np.ndarray:
        return np.round(np.clip((v - lo) / (hi - lo), 0.0, 1.0) * 255.0).astype(np.uint8)

    return apply


def window_percentile(lo_pct: float = 0.5, hi_pct: float = 99.5) -> Callable[[np.ndarray], np.ndarray]:
    """MRI: scale the volume's [lo_pct, hi_pct] percentile range to 0..255."""
    def apply(v: np.ndarray) -> np.ndarray:
        lo, hi = np.percentile(v, [lo_pct, hi_pct])
        return np.round(np.clip((v - lo) / max(hi - lo, 1e-6), 0.0, 1.0) * 255.0).astype(np.uint8)

    return apply


def _lungs(_: np.ndarray) -> np.ndarray:
    labels = _nifti_labels("chest_mask")
    return (labels >= 10) & (labels <= 14)  # the five lung lobes


def _enclosed_air(v: np.ndarray, body_above: float, air_below: float) -> np.ndarray:
    """Voxels darker than ``air_below`` that the body (``v > body_above``, holes filled per
    axial slice) surrounds: the lungs of a chest CT without an organ mask."""
    from scipy import ndimage

    body = np.stack([ndimage.binary_fill_holes(v[:, :, z] > body_above) for z in range(v.shape[2])], axis=2)
    return body & (v < air_below)


def _lungs_hu(v: np.ndarray) -> np.ndarray:
    return _enclosed_air(v, -500.0, -400.0)


def _soft_tissue_uint8(v: np.ndarray) -> np.ndarray:
    """The LIDC volume is stored in a soft-tissue window: air, lungs and fat are all 0 and the body
    outline is not closed, so slices are kept by their share of visible tissue instead."""
    return v > 20.0


def _bone(v: np.ndarray) -> np.ndarray:
    return v >= 300.0  # HU: cortical/cancellous bone


def _head_foreground(v: np.ndarray) -> np.ndarray:
    return v > 0.15 * np.percentile(v, 99)


def _shifted(load: Callable[[], Volume], offset: float) -> Callable[[], Volume]:
    """``load`` with ``offset`` added to every voxel (stored CT numbers -> HU)."""
    def shifted() -> Volume:
        v = load()
        return Volume(v.data + np.float32(offset), v.spacing)

    return shifted


def window_identity(v: np.ndarray) -> np.ndarray:
    """A volume already stored as 0..255 display values."""
    return np.clip(np.round(v), 0, 255).astype(np.uint8)


_FLIP_Z = (False, False, True)

SOURCES: tuple[VolumeSource, ...] = (
    VolumeSource("chest_ct", "chest", "CT, lung window -1000..400 HU", _nifti("chest_ct"),
                 window_hu(-1000, 400), _lungs, 0.01, -500.0, extra_assets=("chest_mask",)),
    VolumeSource("chest_lung1", "chest", "CT, lung window -1000..400 HU (5 mm slices)", _nrrd("chest_lung1"),
                 window_hu(-1000, 400), _lungs_hu, 0.01, -500.0),
    VolumeSource("chest_lung2", "chest", "CT, lung window -1000..400 HU (5 mm slices)", _nrrd("chest_lung2"),
                 window_hu(-1000, 400), _lungs_hu, 0.01, -500.0),
    VolumeSource("chest_lidc2", "chest", "CT (LIDC), stored in a soft-tissue window",
                 _vti("chest_lidc2_index", "chest_lidc2", _FLIP_Z), window_identity, _soft_tissue_uint8, 0.05, 10.0,
                 extra_assets=("chest_lidc2_index",)),
    VolumeSource("brain_mni152", "brain", "T1 MRI template (152-subject average)", _nifti("brain_mni152"),
                 window_percentile(), _head_foreground, 0.10, 0.0, patient="MNI152 template (average of 152 people)"),
    VolumeSource("brain_colin27", "brain", "T1 MRI (one person, Colin27)", _nifti("brain_colin27"),
                 window_percentile(), _head_foreground, 0.10, 0.0),
    VolumeSource("brain_itk_t1", "brain", "T1 MRI (one subject, ITK example)", _nifti("brain_itk_t1"),
                 window_percentile(), _head_foreground, 0.10, 0.0),
    VolumeSource("brain_radiomics1", "brain", "contrast T1 MRI with a tumour (6.5 mm slices)",
                 _nrrd("brain_radiomics1"), window_percentile(), _head_foreground, 0.10, 0.0),
    VolumeSource("brain_radiomics2", "brain", "contrast T1 MRI with a tumour (6.5 mm slices)",
                 _nrrd("brain_radiomics2"), window_percentile(), _head_foreground, 0.10, 0.0),
    VolumeSource("brain_pycortex_s1", "brain", "T1 MRI (one subject, pycortex S1)", _nifti("brain_pycortex_s1"),
                 window_percentile(), _head_foreground, 0.10, 0.0),
    VolumeSource("brain_brainbrowser", "brain", "T1 MRI (one subject, brainbrowser structural1)",
                 _minc_raw("brain_brainbrowser_header", "brain_brainbrowser"), window_percentile(),
                 _head_foreground, 0.10, 0.0, extra_assets=("brain_brainbrowser_header",)),
    VolumeSource("bone_ct", "bone", "head CT, bone window -200..1500 HU",
                 lambda: load_inv3(assets.fetch("bone_ct")), window_hu(-200, 1500), _bone, 0.02, -500.0),
    VolumeSource("bone_headsq", "bone", "low-resolution head CT (3.2 mm), bone window -200..1500 HU",
                 _shifted(_vti("bone_headsq_index", "bone_headsq", _FLIP_Z), -1024.0), window_hu(-200, 1500),
                 _bone, 0.02, -500.0, extra_assets=("bone_headsq_index",)),
)


def body_box(raw: np.ndarray, threshold: float, spacing: tuple[float, float, float],
             margin_mm: float = 5.0) -> tuple[slice, slice, slice]:
    """Bounding box (per axis slices) of ``raw > threshold`` grown by ``margin_mm``."""
    mask = raw > threshold
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        if hit.size == 0:
            box.append(slice(0, raw.shape[axis]))
            continue
        m = int(np.ceil(margin_mm / spacing[axis]))
        box.append(slice(max(0, hit[0] - m), min(raw.shape[axis], hit[-1] + 1 + m)))
    return tuple(box)
