"""The real 3-D scans behind the default dataset, and how each is read, windowed and sliced.

Each :class:`VolumeSource` turns one asset (see :mod:`cbirlib.assets`) into a float32 array
in RAS-like voxel order (x, y, z) with its voxel spacing in mm, a window that maps it to
uint8, an organ mask that decides which slices show enough of the class, and a body mask whose
bounding box crops every slice of that volume the same way.
"""

from __future__ import annotations

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

    @property
    def asset(self) -> assets.Asset:
        return assets.ASSETS[self.volume]


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


def _bone(v: np.ndarray) -> np.ndarray:
    return v >= 300.0  # HU: cortical/cancellous bone


def _head_foreground(v: np.ndarray) -> np.ndarray:
    return v > 0.15 * np.percentile(v, 99)


SOURCES: tuple[VolumeSource, ...] = (
    VolumeSource("chest_ct", "chest", "CT, lung window -1000..400 HU", _nifti("chest_ct"),
                 window_hu(-1000, 400), _lungs, 0.01, -500.0),
    VolumeSource("brain_mni152", "brain", "T1 MRI template (152-subject average)", _nifti("brain_mni152"),
                 window_percentile(), _head_foreground, 0.10, 0.0),
    VolumeSource("brain_colin27", "brain", "T1 MRI (one person, Colin27)", _nifti("brain_colin27"),
                 window_percentile(), _head_foreground, 0.10, 0.0),
    VolumeSource("brain_itk_t1", "brain", "T1 MRI (one subject, ITK example)", _nifti("brain_itk_t1"),
                 window_percentile(), _head_foreground, 0.10, 0.0),
    VolumeSource("bone_ct", "bone", "head CT, bone window -200..1500 HU",
                 lambda: load_inv3(assets.fetch("bone_ct")), window_hu(-200, 1500), _bone, 0.02, -500.0),
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
