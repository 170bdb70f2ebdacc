"""The datasets built from real scans that ship inside registry packages.

- ``default`` (:func:`build_default_dataset`): 224x224 PNG slices of every CT and MRI volume of
  :mod:`cbirlib.datasets.volumes`, one folder per class, several patients per class;
- ``default-drr`` (:func:`build_drr_dataset`): bone and chest replaced by simulated radiographs
  (DRRs) of the CT volumes, brain as in ``default``; every image labelled ``simulated``;
- ``checkset`` (:func:`build_checkset`): real radiographs (chest and bone), never used for
  training, to check what models trained on the others do on real X-rays.

Each build is deterministic (the same assets and config give byte-identical files), records a
manifest (path, label, split, source, package, volume, patient, plane, index, position_mm,
modality, simulated, licence, sha256) and is reused when nothing changed. Splits are contiguous
slabs per (volume, plane) with a gap (:mod:`cbirlib.datasets.splits`), never random; classes are balanced
in every split, and within a class the images are shared as evenly as possible between its
patients.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .. import __version__, paths
from . import assets, radiographs, splits, volumes

MANIFEST_COLUMNS = ("path", "label", "split", "source", "package", "volume", "patient", "plane", "index",
                    "position_mm", "modality", "simulated", "licence", "sha256")
#: CT volumes stored in HU (projections need attenuation); LIDC2 is stored windowed, so it has no DRRs
DRR_VOLUMES = ("chest_ct", "chest_lung1", "chest_lung2", "bone_ct", "bone_headsq")


@dataclass(frozen=True)
class DefaultBuildConfig:
    """Parameters of the default dataset builds (lengths in mm, angles in degrees, sizes in px)."""

    image_size: int = 224
    slice_step_mm: float = 2.0  # slice stride = round(step / voxel spacing): kept slices 1.5-2.5 mm apart
    gap_mm: float = 10.0  # train / val / test slabs of one (volume, plane) are at least this far apart
    ratio: tuple[int, int, int] = splits.PAPER_RATIO
    crop_margin_mm: float = 5.0
    max_plane_aspect: float = 4.0  # skip planes whose pixels are more than 4x longer one way (5-mm slices)
    max_per_class: int = 300  # at most this many images per class (all splits), shared out between patients
    drr_step_mm: float = 2.0  # DRRs: isotropic voxels of the resampled CT
    drr_azimuths: tuple[float, ...] = tuple(float(a) for a in range(0, 180, 5))
    drr_elevations: tuple[float, ...] = (-10.0, 0.0, 10.0)

    def key(self, *modules) -> str:
        """Hash of this config and of the code that builds the images: either changing means the
        dataset is rebuilt."""
        h = hashlib.sha256(json.dumps(self.__dict__, sort_keys=True).encode())
        for module in (volumes, radiographs, splits, *modules):
            h.update(Path(module.__file__).read_bytes())
        h.update(Path(__file__).read_bytes())
        return h.hexdigest()[:16]


# --------------------------------------------------------------------------- slicing

def _slice_image(sl: np.ndarray, spacing_ab: tuple[float, float], size: int) -> np.ndarray:
    """uint8 slice (a, b) with voxel spacing (sa, sb) mm -> (size, size) uint8 image with the
    physical aspect ratio kept (letterboxed on black), displayed with rows along -b."""
    return radiographs.letterbox(np.rot90(sl), size, aspect=spacing_ab[1] / spacing_ab[0])


def _source_slices(src: volumes.VolumeSource, cfg: DefaultBuildConfig):
    """Yield (plane, index, position_mm, image) for every kept slice of one volume."""
    vol = src.load()
    box = volumes.body_box(vol.data, src.body_threshold, vol.spacing, cfg.crop_margin_mm)
    raw = vol.data[box]
    organ = src.organ(vol.data)[box]
    img8 = src.window(raw)
    for plane, axis in volumes.PLANES.items():
        other = tuple(a for a in range(3) if a != axis)
        spacing_ab = tuple(vol.spacing[a] for a in other)
        if max(spacing_ab) / min(spacing_ab) > cfg.max_plane_aspect:
            continue
        stride = max(1, round(cfg.slice_step_mm / vol.spacing[axis]))
        fraction = organ.mean(axis=other)
        for i in range(0, raw.shape[axis], stride):
            if fraction[i] < src.min_fraction:
                continue
            index = i + box[axis].start  # index in the full volume
            sl = img8[(slice(None),) * axis + (i,)]
            yield plane, index, round(index * vol.spacing[axis], 3), _slice_image(sl, spacing_ab, cfg.image_size)


def _drr_views(src: volumes.VolumeSource, cfg: DefaultBuildConfig):
    """Yield (plane, index, position, image) for every DRR of one CT volume: ``plane`` names the
    elevation, ``index`` and ``position`` are the azimuth in degrees."""
    vol = src.load()
    box = volumes.body_box(vol.data, src.body_threshold, vol.spacing, cfg.crop_margin_mm)
    mu = radiographs.resample_isotropic(radiographs.attenuation(vol.data[box]), vol.spacing, cfg.drr_step_mm)
    images = radiographs.drr_views(mu, cfg.drr_step_mm, cfg.drr_azimuths, cfg.drr_elevations)
    views = [(e, a, images[(e, a)]) for e in cfg.drr_elevations for a in cfg.drr_azimuths]
    stack = np.stack([v for _, _, v in views])
    lo, hi = np.percentile(stack[stack > 0.05], [1.0, 99.8])  # one window per CT, set by the body
    for e, a, view in views:
        image = radiographs.letterbox(radiographs.to_uint8(view, lo, hi), cfg.image_size)
        yield f"drr elevation {e:+.0f}", int(a), float(a), image


# --------------------------------------------------------------------------- balancing

def _water_fill(sizes: np.ndarray, total: int) -> np.ndarray:
    """Integer quotas <= sizes summing to min(total, sizes.sum()), as equal as possible."""
    quota = np.zeros(len(sizes), dtype=int)
    left = min(int(total), int(sizes.sum()))
    while left > 0:
        open_ = np.flatnonzero(quota < sizes)
        share = max(1, left // len(open_))
        for i in open_[np.argsort(sizes[open_] - quota[open_], kind="stable")]:
            take = min(share, sizes[i] - quota[i], left)
            quota[i] += take
            left -= take
            if left == 0:
                break
    return quota


def balance(table: pd.DataFrame, max_per_class: int | None, ratio=splits.PAPER_RATIO) -> pd.DataFrame:
    """Equal counts per class in every split: the smallest class sets each split's size (capped
    so a class keeps at most ``max_per_class`` images in all); within a class the images are
    shared between its volumes as evenly as possible and spread evenly along each volume."""
    keep = []
    for k, split in enumerate(splits.SPLITS):
        part = table[table.split == split]
        if part.empty:
            continue
        n = int(part.groupby("label").size().min())
        if max_per_class is not None:
            n = min(n, max(1, round(max_per_class * ratio[k] / sum(ratio))))
        for _, g in part.groupby("label"):
            sizes = g.groupby("volume").size()
            quota = dict(zip(sizes.index, _water_fill(sizes.to_numpy(), n)))
            for vol, gv in g.groupby("volume"):
                gv = gv.sort_values(["plane", "index"])
                keep.append(gv.iloc[splits.even_subsample(len(gv), quota[vol])])
    return pd.concat(keep).sort_values(["label", "split", "volume", "plane", "index"]).reset_index(drop=True)


# --------------------------------------------------------------------------- writing

def _write_png(path: Path, image: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="PNG", optimize=False, compress_level=6)
    return assets.sha256_file(path)


def _source_record(asset: assets.Asset) -> dict:
    return dict(source=f"{asset.registry}:{asset.package}", package=f"{asset.package}=={assets.package_version(asset)}",
                licence=asset.licence)


def _is_current(out: Path, key: str, hashes: dict) -> bool:
    manifest_path, info_path = out / "manifest.csv", out / "dataset.json"
    if not (manifest_path.exists() and info_path.exists()):
        return False
    info = json.loads(info_path.read_text())
    if info.get("config_key") != key or info.get("asset_sha256") != hashes:
        return False
    return all((out / p).exists() for p in pd.read_csv(manifest_path).path)


def _write_dataset(out: Path, name: str, rows: list[dict], key: str, hashes: dict, info: dict,
                   progress: bool) -> Path:
    """Write the images of ``rows`` (each with an ``image`` array and manifest fields) and the
    manifest into ``out`` atomically (a temporary folder renamed at the end)."""
    from tqdm.auto import tqdm

    tmp = out.with_name(out.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    records = []
    for row in tqdm(rows, desc=f"writing {name} PNGs", disable=not progress):
        row = dict(row)
        image = row.pop("image")
        row["sha256"] = _write_png(tmp / row["path"], image)
        records.append(row)
    manifest = pd.DataFrame(records, columns=list(MANIFEST_COLUMNS))
    manifest.to_csv(tmp / "manifest.csv", index=False, lineterminator="\n")
    info = {"name": name, "cbirlib_version": __version__, "config_key": key, "asset_sha256": hashes,
            "counts": manifest.groupby(["label", "split"]).size().unstack(fill_value=0).to_dict(orient="index"),
            "patients_per_class": manifest.groupby("label").patient.nunique().to_dict(), **info}
    (tmp / "dataset.json").write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)  # two renames: readers see the old dataset or the new one, gone for an instant only
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return out / "manifest.csv"


def _build_from_sources(out: Path, name: str, sources, views, config: DefaultBuildConfig, force: bool,
                        progress: bool) -> Path:
    hashes = {a: assets.ASSETS[a].sha256 for s in sources for a in s.assets}
    key = config.key()
    if not force and _is_current(out, key, hashes):
        return out / "manifest.csv"
    from tqdm.auto import tqdm

    rows = []
    for src in tqdm(sources, desc=f"{name}: reading volumes", disable=not progress):
        simulated = views[src.volume] is _drr_views
        for plane, index, pos, image in views[src.volume](src, config):
            rows.append(dict(label=src.label, volume=src.volume, patient=src.patient, plane=plane, index=index,
                             position_mm=pos, image=image, simulated=simulated,
                             modality=("simulated radiograph (DRR) of " if simulated else "") + src.modality))
    table = pd.DataFrame(rows)
    table["split"] = ""
    for _, g in table.groupby(["volume", "plane"]):
        table.loc[g.index, "split"] = splits.slab_split(g.position_mm.to_numpy(), config.gap_mm, config.ratio)
    candidates = table.groupby("label").size().to_dict()
    table = balance(table[table.split != ""], config.max_per_class, config.ratio)
    by_volume = {s.volume: s for s in sources}
    records = []
    for row in table.itertuples(index=False):
        src = by_volume[row.volume]
        tag = str(row.plane).replace("drr elevation ", "drr-e")
        records.append(dict(path=f"{row.label}/{row.volume}_{tag}_{row.index:03d}.png", label=row.label, split=row.split, volume=row.volume,
                            patient=row.patient, plane=row.plane, index=row.index, position_mm=row.position_mm,
                            modality=row.modality, simulated=row.simulated, image=row.image,
                            **_source_record(src.asset)))
    info = {"config": config.__dict__,
            "assets": {s.volume: s.asset.record() | {"package_version_used": assets.package_version(s.asset)}
                       for s in sources},
            "slices_before_split_and_balance": candidates,
            "min_cross_split_distance_mm": splits.min_cross_split_distance(table),
            "position_unit": "mm along the slice axis; degrees of azimuth for DRRs"}
    return _write_dataset(out, name, records, key, hashes, info, progress)


def build_default_dataset(out_dir: Path | None = None, config: DefaultBuildConfig = DefaultBuildConfig(),
                          force: bool = False, progress: bool = True) -> Path:
    """Build (or reuse) the default CT/MRI dataset; returns the path of its ``manifest.csv``."""
    out = Path(out_dir) if out_dir else paths.data_dir() / "default"
    views = {s.volume: _source_slices for s in volumes.SOURCES}
    return _build_from_sources(out, "default", volumes.SOURCES, views, config, force, progress)


def build_drr_dataset(out_dir: Path | None = None, config: DefaultBuildConfig = DefaultBuildConfig(),
                      force: bool = False, progress: bool = True) -> Path:
    """Build (or reuse) ``default-drr``: chest and bone as simulated radiographs of every CT stored
    in HU (:data:`DRR_VOLUMES`), brain as MRI slices as in ``default``."""
    out = Path(out_dir) if out_dir else paths.data_dir() / "default-drr"
    sources = [s for s in volumes.SOURCES if s.volume in DRR_VOLUMES or s.label == "brain"]
    views = {s.volume: (_drr_views if s.volume in DRR_VOLUMES else _source_slices) for s in sources}
    return _build_from_sources(out, "default-drr", sources, views, config, force, progress)


def build_checkset(out_dir: Path | None = None, image_size: int = 224, force: bool = False,
                   progress: bool = False) -> Path:
    """Build (or reuse) ``checkset``: every real radiograph asset letterboxed to ``image_size``,
    all in the ``test`` split."""
    out = Path(out_dir) if out_dir else paths.data_dir() / "checkset"
    names = assets.XRAY_ASSETS
    hashes = {n: assets.ASSETS[n].sha256 for n in names}
    key = hashlib.sha256(json.dumps({"image_size": image_size}).encode()
                         + Path(radiographs.__file__).read_bytes() + Path(__file__).read_bytes()).hexdigest()[:16]
    if not force and _is_current(out, key, hashes):
        return out / "manifest.csv"
    rows = []
    for n in names:
        asset = assets.ASSETS[n]
        label = n.split("_")[1]  # xray_<label>_...
        image = radiographs.letterbox(radiographs.read_radiograph(assets.fetch(n)), image_size)
        stem = Path(asset.filename).stem
        patient = (stem.split("_")[0] if stem.startswith("person") else "-".join(stem.split("-")[1:3])
                   if asset.package == "pneumonia-model-package" else n)
        rows.append(dict(path=f"{label}/{n}.png", label=label, split="test", volume=n, patient=patient,
                         plane="projection", index=0, position_mm=np.nan, image=image, simulated=False,
                         modality="radiograph (real): " + asset.description, **_source_record(asset)))
    return _write_dataset(out, "checkset", rows, key, hashes, {"image_size": image_size}, progress)
