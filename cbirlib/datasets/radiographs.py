"""Projection radiographs: simulated ones from CT volumes (DRRs) and real ones read from files.

The paper's bone and chest classes are radiographs (hand, skull and chest X-rays); the default
dataset's are CT slices. :func:`drr` makes digitally reconstructed radiographs — parallel-beam
line integrals of attenuation through a CT, mu ~ (HU + 1000) / 1000 relative to water — at any
angle, always labelled *simulated*. :func:`read_radiograph` reads the real radiographs of the
check set (DICOM, JPEG or PNG) to uint8 grey, with MONOCHROME1 inverted; it never reads or
returns DICOM header fields (one of the files carries a patient name).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

#: linear attenuation of water at diagnostic energies (~70 keV), 1/mm
MU_WATER_PER_MM = 0.019


def attenuation(hu: np.ndarray) -> np.ndarray:
    """HU -> linear attenuation relative to water, clipped at 0 (air, padding outside the scan)."""
    return np.clip((hu + 1000.0) / 1000.0, 0.0, None).astype(np.float32)


def resample_isotropic(volume: np.ndarray, spacing: tuple[float, float, float], step_mm: float) -> np.ndarray:
    """Trilinear resampling of an (X, Y, Z) volume to ``step_mm`` voxels."""
    from scipy import ndimage

    zoom = [s / step_mm for s in spacing]
    return ndimage.zoom(volume, zoom, order=1, prefilter=False)


def drr(mu: np.ndarray, step_mm: float, azimuth_deg: float, elevation_deg: float = 0.0) -> np.ndarray:
    """A parallel-beam radiograph of an isotropic attenuation volume ``mu`` (X, Y, Z), rays along
    +Y (front to back) after turning the volume by ``azimuth_deg`` about Z and tilting it by
    ``elevation_deg`` about X.

    Returns:
        (Z, X) float32 image of the line integral of attenuation (dimensionless: minus the log of
        the transmitted fraction): bone and dense tissue bright, air dark, as on a radiograph film;
        rows run from the top of the patient (Z high) down.
    """
    return drr_views(mu, step_mm, (azimuth_deg,), (elevation_deg,))[(elevation_deg, azimuth_deg)]


def _turn(v: np.ndarray, degrees: float, axes: tuple[int, int]) -> np.ndarray:
    from scipy import ndimage

    if not degrees:
        return v
    return ndimage.rotate(v, degrees, axes=axes, reshape=False, order=1, mode="constant", cval=0.0)


def drr_views(mu: np.ndarray, step_mm: float, azimuths_deg, elevations_deg) -> dict[tuple[float, float], np.ndarray]:
    """:func:`drr` for every (elevation, azimuth) pair, keyed so. The volume is turned once per
    azimuth and that turned volume tilted to each elevation (the same two rotations as
    :func:`drr`, hence the same images, with 1 + #elevations rotations per azimuth instead of
    2 x #elevations)."""
    out = {}
    for a in azimuths_deg:
        turned = _turn(mu, a, (0, 1))
        for e in elevations_deg:
            line = _turn(turned, e, (1, 2)).sum(axis=1) * step_mm * MU_WATER_PER_MM  # (X, Z)
            out[(e, a)] = np.ascontiguousarray(line.T[::-1], dtype=np.float32)
    return out


def to_uint8(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Linear map of [lo, hi] to 0..255."""
    return np.round(np.clip((image - lo) / max(hi - lo, 1e-9), 0.0, 1.0) * 255.0).astype(np.uint8)


def letterbox(image: np.ndarray, size: int, aspect: float = 1.0) -> np.ndarray:
    """(H, W) uint8 -> (size, size) uint8, scaled to fit with its aspect ratio (``aspect`` = pixel
    height / pixel width) and centred on black."""
    h_phys, w_phys = image.shape[0] * aspect, image.shape[1]
    scale = size / max(h_phys, w_phys)
    h, w = max(1, round(h_phys * scale)), max(1, round(w_phys * scale))
    small = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((w, h), Image.Resampling.BICUBIC))
    canvas = np.zeros((size, size), dtype=np.uint8)
    top, left = (size - h) // 2, (size - w) // 2
    canvas[top:top + h, left:left + w] = small
    return canvas


def read_radiograph(path: str | Path) -> np.ndarray:
    """A real radiograph as uint8 grey (H, W), brightest = most attenuating, from DICOM (pixel data
    only, MONOCHROME1 inverted, stored bits scaled to 0..255), JPEG or PNG."""
    path = Path(path)
    if path.suffix.lower() == ".dcm":
        import pydicom

        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array.astype(np.float64)
        if pixels.ndim != 2:
            raise ValueError(f"{path.name}: expected one grey frame, got shape {pixels.shape}")
        top = float(2 ** int(ds.BitsStored) - 1)
        lo, hi = np.percentile(pixels, [0.5, 99.5])
        pixels = np.clip((pixels - lo) / max(hi - lo, 1.0), 0.0, 1.0) * 255.0 if top > 255 else pixels
        grey = np.round(pixels).astype(np.uint8)
        if str(ds.PhotometricInterpretation).upper() == "MONOCHROME1":
            grey = 255 - grey
        return grey
    with Image.open(path) as im:
        return np.asarray(im.convert("L"), dtype=np.uint8)
