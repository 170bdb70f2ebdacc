"""Datasets: the embedded default dataset built from real scans, and your own image folders.

A dataset is addressed everywhere by ``data="default"`` or by a folder path
(:func:`open_dataset`). Both give an :class:`ImageDataset`: a table with one row per image
(``path`` relative to the root, ``label``, ``split``) and a way to load a split as uint8 RGB
arrays.

The default dataset (:func:`build_default_dataset`) slices real CT and MRI volumes shipped
inside registry packages into 224x224 PNGs, one folder per class, split train/val/test by
contiguous slabs of each (volume, plane) with a gap between slabs, never at random: neighbouring
slices are near-copies, so a random split would leak test images into training.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from . import __version__, assets, paths, volumes

SPLITS = ("train", "val", "test")
#: the paper's split, 1000 : 100 : 100 images per class
PAPER_RATIO = (10, 1, 1)
MANIFEST_COLUMNS = ("path", "label", "split", "source", "package", "volume", "plane", "index",
                    "position_mm", "modality", "simulated", "licence", "sha256")


@dataclass(frozen=True)
class DefaultBuildConfig:
    """Parameters of the default dataset build (all lengths in mm, sizes in pixels)."""

    image_size: int = 224
    slice_step_mm: float = 2.0  # slice stride = round(step / voxel spacing): kept slices 1.5-2.5 mm apart
    gap_mm: float = 10.0  # train / val / test slabs of one (volume, plane) are at least this far apart
    ratio: tuple[int, int, int] = PAPER_RATIO
    crop_margin_mm: float = 5.0

    def key(self) -> str:
        """Hash of this config and of the code that slices the volumes: either changing
        means the dataset is rebuilt."""
        h = hashlib.sha256(json.dumps(self.__dict__, sort_keys=True).encode())
        for module in (volumes.__file__, __file__):
            h.update(Path(module).read_bytes())
        return h.hexdigest()[:16]


class DatasetError(ValueError):
    """A dataset folder, manifest or split file is not usable; the message says why."""


# --------------------------------------------------------------------------- splitting

def slab_split(positions_mm: np.ndarray, gap_mm: float, ratio: tuple[int, int, int] = PAPER_RATIO
               ) -> np.ndarray:
    """Assign slices of one (volume, plane) to contiguous slabs.

    Layout along the slice axis: ``train | gap | val | gap | test | gap | train``, with val
    and test in the middle of the stack (the most typical anatomy). ``val`` and ``test`` get
    ``round(n * ratio_k / sum(ratio))`` slices each (at least 1); slices inside a gap are
    dropped. Stacks too short for three slabs go to train whole.

    Args:
        positions_mm: (n,) slice positions along the axis, in mm.
        gap_mm: minimum distance between slices of different splits.
        ratio: train : val : test proportions.

    Returns:
        (n,) object array of ``"train"``, ``"val"``, ``"test"`` or ``""`` (dropped), in the
        order of ``positions_mm``.
    """
    pos = np.asarray(positions_mm, dtype=float)
    n = pos.size
    out = np.full(n, "", dtype=object)
    if n == 0:
        return out
    order = np.argsort(pos, kind="stable")
    p = pos[order]
    total = sum(ratio)
    n_val = max(1, round(n * ratio[1] / total))
    n_test = max(1, round(n * ratio[2] / total))
    start = (n - n_val - n_test) // 2
    labels = np.full(n, "", dtype=object)
    ok = start > 0
    if ok:
        val = np.arange(start, start + n_val)
        t0 = int(np.searchsorted(p, p[val[-1]] + gap_mm, side="left"))
        test = np.arange(t0, t0 + n_test)
        ok = test[-1] < n
    if not ok:
        out[:] = "train"
        return out
    labels[val] = "val"
    labels[test] = "test"
    labels[p <= p[val[0]] - gap_mm] = "train"
    labels[p >= p[test[-1]] + gap_mm] = "train"
    out[order] = labels
    return out


def min_cross_split_distance(table: pd.DataFrame) -> float:
    """Smallest distance (mm) between two images of different splits in the same (volume, plane)."""
    best = math.inf
    for _, g in table.groupby(["volume", "plane"]):
        for a, b in (("train", "test"), ("train", "val"), ("val", "test")):
            pa = g.loc[g.split == a, "position_mm"].to_numpy()
            pb = g.loc[g.split == b, "position_mm"].to_numpy()
            if pa.size and pb.size:
                best = min(best, float(np.abs(pa[:, None] - pb[None, :]).min()))
    return best


def _even_subsample(n: int, k: int) -> np.ndarray:
    """k distinct indices spread evenly over range(n) (k <= n)."""
    if k >= n:
        return np.arange(n)
    return np.floor(np.linspace(0, n - 1, k) + 0.5).astype(int)


def _balance(table: pd.DataFrame) -> pd.DataFrame:
    """Equal counts per class in every split: the smallest class sets each split's size; larger
    classes keep images spread evenly over their (volume, plane, index) order."""
    keep = []
    for split in SPLITS:
        part = table[table.split == split]
        k = part.groupby("label").size().min()
        for _, g in part.groupby("label"):
            g = g.sort_values(["volume", "plane", "index"])
            keep.append(g.iloc[_even_subsample(len(g), int(k))])
    return pd.concat(keep).sort_values(["label", "split", "volume", "plane", "index"]).reset_index(drop=True)


# --------------------------------------------------------------------------- default dataset build

def _slice_image(sl: np.ndarray, spacing_ab: tuple[float, float], size: int) -> np.ndarray:
    """uint8 slice (a, b) with voxel spacing (sa, sb) mm -> (size, size) uint8 image with the
    physical aspect ratio kept (letterboxed on black), displayed with rows along -b."""
    img = np.rot90(sl)  # rows = b (reversed), columns = a
    sa, sb = spacing_ab
    h_mm, w_mm = img.shape[0] * sb, img.shape[1] * sa
    scale = size / max(h_mm, w_mm)
    h, w = max(1, round(h_mm * scale)), max(1, round(w_mm * scale))
    small = Image.fromarray(np.ascontiguousarray(img)).resize((w, h), Image.Resampling.BICUBIC)
    canvas = np.zeros((size, size), dtype=np.uint8)
    top, left = (size - h) // 2, (size - w) // 2
    canvas[top:top + h, left:left + w] = np.asarray(small)
    return canvas


def _source_slices(src: volumes.VolumeSource, cfg: DefaultBuildConfig):
    """Yield (plane, index, position_mm, image) for every kept slice of one volume."""
    vol = src.load()
    box = volumes.body_box(vol.data, src.body_threshold, vol.spacing, cfg.crop_margin_mm)
    raw = vol.data[box]
    organ = src.organ(vol.data)[box]
    img8 = src.window(raw)
    for plane, axis in volumes.PLANES.items():
        stride = max(1, round(cfg.slice_step_mm / vol.spacing[axis]))
        other = tuple(a for a in range(3) if a != axis)
        fraction = organ.mean(axis=other)
        spacing_ab = tuple(vol.spacing[a] for a in other)
        for i in range(0, raw.shape[axis], stride):
            if fraction[i] < src.min_fraction:
                continue
            index = i + box[axis].start  # index in the full volume
            sl = img8[(slice(None),) * axis + (i,)]
            yield plane, index, round(index * vol.spacing[axis], 3), _slice_image(sl, spacing_ab, cfg.image_size)


def _write_png(path: Path, image: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="PNG", optimize=False, compress_level=6)
    return assets.sha256_file(path)


def build_default_dataset(out_dir: Path | None = None, config: DefaultBuildConfig = DefaultBuildConfig(),
                          force: bool = False, progress: bool = True) -> Path:
    """Build (or reuse) the default dataset; returns the path of its ``manifest.csv``.

    Deterministic: the same assets and config give byte-identical PNGs and manifest. A build
    whose ``dataset.json`` records the same config and asset hashes, with every file present,
    is reused unless ``force``.
    """
    out = Path(out_dir) if out_dir else paths.default_dataset_dir()
    manifest_path, info_path = out / "manifest.csv", out / "dataset.json"
    asset_hashes = {s.volume: s.asset.sha256 for s in volumes.SOURCES}
    if not force and manifest_path.exists() and info_path.exists():
        info = json.loads(info_path.read_text())
        if info.get("config_key") == config.key() and info.get("asset_sha256") == asset_hashes:
            table = pd.read_csv(manifest_path)
            if all((out / p).exists() for p in table.path):
                return manifest_path

    from tqdm.auto import tqdm

    rows = []
    for src in tqdm(volumes.SOURCES, desc="slicing volumes", disable=not progress):
        for plane, index, pos, image in _source_slices(src, config):
            rows.append(dict(label=src.label, volume=src.volume, plane=plane, index=index,
                             position_mm=pos, image=image))
    table = pd.DataFrame(rows)
    table["split"] = ""
    for _, g in table.groupby(["volume", "plane"]):
        table.loc[g.index, "split"] = slab_split(g.position_mm.to_numpy(), config.gap_mm, config.ratio)
    candidates = table.groupby("label").size().to_dict()
    table = _balance(table[table.split != ""])

    tmp = out.with_name(out.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    records = []
    for row in tqdm(table.itertuples(index=False), total=len(table), desc="writing PNGs",
                    disable=not progress):
        src = next(s for s in volumes.SOURCES if s.volume == row.volume)
        rel = f"{row.label}/{row.volume}_{row.plane}_{row.index:03d}.png"
        digest = _write_png(tmp / rel, row.image)
        records.append(dict(path=rel, label=row.label, split=row.split,
                            source=f"{src.asset.registry}:{src.asset.package}",
                            package=f"{src.asset.package}=={assets.package_version(src.asset)}",
                            volume=row.volume, plane=row.plane, index=row.index,
                            position_mm=row.position_mm, modality=src.modality,
                            simulated=src.simulated, licence=src.asset.licence, sha256=digest))
    manifest = pd.DataFrame(records, columns=list(MANIFEST_COLUMNS))
    manifest.to_csv(tmp / "manifest.csv", index=False, lineterminator="\n")
    info = {
        "name": "default",
        "cbirlib_version": __version__,
        "config": config.__dict__,
        "config_key": config.key(),
        "asset_sha256": asset_hashes,
        "assets": {s.volume: s.asset.record() | {"package_version_used": assets.package_version(s.asset)}
                   for s in volumes.SOURCES},
        "slices_before_split_and_balance": candidates,
        "counts": manifest.groupby(["label", "split"]).size().unstack(fill_value=0).to_dict(orient="index"),
        "min_cross_split_distance_mm": min_cross_split_distance(manifest),
    }
    (tmp / "dataset.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return manifest_path


# --------------------------------------------------------------------------- datasets

@dataclass
class ImageDataset:
    """Images on disk with labels and splits.

    Attributes:
        root: folder the ``path`` column is relative to.
        name: ``"default"`` or the folder path.
        classes: class names, in label-index order (sorted).
        table: one row per image; at least ``path``, ``label``, ``split``.
        resize: policy for images whose size differs from the requested one
            (``"resize"``: bicubic to a square, aspect ratio not kept; ``"error"``).
        provenance: where the images came from (JSON-ready).
    """

    root: Path
    name: str
    classes: list[str]
    table: pd.DataFrame
    resize: str = "resize"
    provenance: dict = field(default_factory=dict)

    def counts(self) -> pd.DataFrame:
        """Images per class (rows) and split (columns)."""
        c = self.table.groupby(["label", "split"]).size().unstack(fill_value=0)
        return c.reindex(index=self.classes, columns=[s for s in SPLITS if s in c.columns], fill_value=0)

    def subset(self, split: str | None = None, per_class: int | None = None) -> pd.DataFrame:
        """Rows of one split (or all), optionally the first ``per_class`` rows of each class
        spread evenly over that class's rows (deterministic)."""
        if split is not None and split not in SPLITS:
            raise DatasetError(f"unknown split {split!r}; choose one of {SPLITS}")
        t = self.table if split is None else self.table[self.table.split == split]
        if per_class is not None:
            t = pd.concat([g.iloc[_even_subsample(len(g), per_class)] for _, g in t.groupby("label", sort=True)])
        return t

    def load(self, split: str | None = None, image_size: int = 224, per_class: int | None = None
             ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Load images as uint8 RGB.

        Returns:
            images (N, image_size, image_size, 3) uint8, labels (N,) int64 (index into
            :attr:`classes`), ids (N,) the ``path`` of each image (its id everywhere later).
        """
        rows = self.subset(split, per_class)
        images = np.empty((len(rows), image_size, image_size, 3), dtype=np.uint8)
        for k, rel in enumerate(rows.path):
            images[k] = read_rgb(self.root / rel, image_size, self.resize)
        labels = np.array([self.classes.index(c) for c in rows.label], dtype=np.int64)
        return images, labels, list(rows.path)


def counts_long(ds: ImageDataset) -> pd.DataFrame:
    """Tidy (label, split, images, source='ours') rows."""
    c = ds.counts().stack().rename("images").reset_index()
    return c.assign(source="ours")[["label", "split", "images", "source"]]


def counts_with_paper(ds: ImageDataset) -> pd.DataFrame:
    """Our counts plus the paper's 1000/100/100 rows for the classes the paper also has."""
    from . import paper

    theirs = paper.dataset_counts()
    theirs = theirs[theirs.label.isin(ds.classes)]
    return pd.concat([counts_long(ds), theirs], ignore_index=True)


def sources_table(ds: ImageDataset) -> pd.DataFrame:
    """Images per source volume with modality, package and licence (default-style manifests)."""
    cols = [c for c in ("label", "volume", "modality", "package", "licence", "simulated") if c in ds.table]
    return ds.table.groupby(cols, sort=True).size().rename("images").reset_index()


def dataset_record(ds: ImageDataset) -> dict:
    """JSON-ready description of a dataset for results provenance."""
    manifest = ds.root / "manifest.csv"
    return {
        "name": ds.name,
        "classes": ds.classes,
        "counts": {k: {s: int(n) for s, n in v.items()} for k, v in ds.counts().to_dict(orient="index").items()},
        "manifest_sha256": assets.sha256_file(manifest) if manifest.exists() else None,
        "build": {k: ds.provenance.get(k) for k in ("config", "config_key", "asset_sha256", "split",
                                                    "resize_policy") if k in ds.provenance},
    }


def read_rgb(path: Path, image_size: int | None = None, resize: str = "resize") -> np.ndarray:
    """Read one image file as uint8 RGB (H, W, 3); grey and RGBA are converted to RGB.

    With ``image_size``, images of another size are resized to ``image_size`` square (bicubic,
    aspect ratio not kept) when ``resize="resize"``, or rejected when ``resize="error"``.
    """
    try:
        with Image.open(path) as im:
            im.load()
            rgb = im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DatasetError(f"cannot read image {path}: {e}") from e
    if image_size is not None and rgb.size != (image_size, image_size):
        if resize == "error":
            raise DatasetError(f"{path} is {rgb.size[0]}x{rgb.size[1]}, expected {image_size}x{image_size} "
                               "(resize='error')")
        rgb = rgb.resize((image_size, image_size), Image.Resampling.BICUBIC)
    return np.asarray(rgb, dtype=np.uint8)


def _image_extensions() -> set[str]:
    return {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def stratified_split(labels: list[str], seed: int = 0, ratio: tuple[int, int, int] = PAPER_RATIO
                     ) -> np.ndarray:
    """Seeded per-class split in ``ratio`` (train : val : test); val and test get at least one
    image per class when the class has at least 3."""
    labels = np.asarray(labels)
    out = np.full(labels.size, "train", dtype=object)
    rng = np.random.default_rng(seed)
    total = sum(ratio)
    for c in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(idx.size)]
        n = idx.size
        n_val = max(1 if n >= 3 else 0, round(n * ratio[1] / total))
        n_test = max(1 if n >= 3 else 0, round(n * ratio[2] / total))
        out[idx[:n_val]] = "val"
        out[idx[n_val:n_val + n_test]] = "test"
    return out


def load_image_folder(path: str | Path, split_file: str | Path | None = None, seed: int = 0,
                      resize: str = "resize") -> ImageDataset:
    """Index a folder with one sub-folder per class (any format Pillow reads).

    Splits come from ``split_file`` (CSV with columns ``path`` relative to the folder and
    ``split``) or from a seeded stratified split in the paper's 10:1:1 ratio. Files whose
    extension is not an image format are ignored; files that claim to be images but cannot be
    opened are an error naming the file.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise DatasetError(f"dataset folder {root} does not exist")
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder (expected one sub-folder per class)")
    if resize not in ("resize", "error"):
        raise DatasetError(f"resize must be 'resize' or 'error', got {resize!r}")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(class_dirs) < 2:
        raise DatasetError(f"{root} has {len(class_dirs)} class folder(s); need at least 2 "
                           "(one sub-folder per class)")
    exts = _image_extensions()
    rows, sizes = [], set()
    for d in class_dirs:
        files = sorted(f for f in d.rglob("*") if f.is_file() and f.suffix.lower() in exts)
        if not files:
            raise DatasetError(f"class folder {d} contains no images")
        for f in files:
            try:
                with Image.open(f) as im:
                    sizes.add(im.size)
            except (UnidentifiedImageError, OSError) as e:
                raise DatasetError(f"cannot read image {f}: {e}") from e
            rows.append(dict(path=f.relative_to(root).as_posix(), label=d.name))
    table = pd.DataFrame(rows)
    if split_file is not None:
        table["split"] = _read_split_file(Path(split_file), table)
        split_source = str(split_file)
    else:
        table["split"] = stratified_split(table.label.tolist(), seed)
        split_source = f"seeded stratified split {PAPER_RATIO}, seed {seed}"
    if resize == "error" and len(sizes) > 1:
        raise DatasetError(f"{root} holds images of {len(sizes)} different sizes "
                           f"({sorted(sizes)[:4]}...) and resize='error'")
    prov = {"name": str(root), "source": "user folder", "split": split_source,
            "image_sizes": sorted(f"{w}x{h}" for w, h in sizes),
            "resize_policy": resize}
    return ImageDataset(root, str(root), [d.name for d in class_dirs], table, resize, prov)


def _read_split_file(path: Path, table: pd.DataFrame) -> np.ndarray:
    try:
        splits = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise DatasetError(f"cannot read split file {path}: {e}") from e
    if not {"path", "split"} <= set(splits.columns):
        raise DatasetError(f"split file {path} needs columns 'path' and 'split', has {list(splits.columns)}")
    bad = sorted(set(splits.split) - set(SPLITS))
    if bad:
        raise DatasetError(f"split file {path}: unknown split names {bad}; use {SPLITS}")
    mapping = dict(zip(splits.path, splits.split))
    missing = [p for p in table.path if p not in mapping]
    if missing:
        raise DatasetError(f"split file {path} does not list {len(missing)} image(s), e.g. {missing[:3]}")
    return table.path.map(mapping).to_numpy()


def open_dataset(data: str | Path = "default", seed: int = 0, resize: str = "resize") -> ImageDataset:
    """``"default"`` -> the embedded default dataset (must be built: ``make data``); a folder with
    a ``manifest.csv`` -> that manifest; any other folder -> :func:`load_image_folder`."""
    if str(data) == "default":
        root = paths.default_dataset_dir()
        if not (root / "manifest.csv").exists():
            raise DatasetError(f"the default dataset is not built yet ({root}); run `make data` "
                               "or `cbir data build`")
    else:
        root = Path(data).expanduser()
        if not (root / "manifest.csv").exists():
            return load_image_folder(root, seed=seed, resize=resize)
    table = pd.read_csv(root / "manifest.csv")
    missing_cols = {"path", "label", "split"} - set(table.columns)
    if missing_cols:
        raise DatasetError(f"{root / 'manifest.csv'} lacks columns {sorted(missing_cols)}")
    info_path = root / "dataset.json"
    prov = json.loads(info_path.read_text()) if info_path.exists() else {"name": str(root)}
    name = "default" if str(data) == "default" else str(root)
    return ImageDataset(root, name, sorted(table.label.unique()), table, resize, prov)
