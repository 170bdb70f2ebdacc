"""Datasets: the embedded default datasets built from real scans, and your own image folders.

A dataset is addressed everywhere by name (``"default"``, ``"default-drr"``, ``"checkset"``; see
:mod:`cbirlib.datasets.defaultdata`) or by a folder path (:func:`open_dataset`). Both give an
:class:`ImageDataset`: a table with one row per image (``path`` relative to the root, ``label``,
``split``, and for the built datasets where each image comes from) and a way to load a split as
uint8 RGB arrays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from .. import paths
from . import assets
from .splits import PAPER_RATIO, SPLITS, even_subsample, stratified_split

#: the datasets this project builds (``make data``), by name
BUILT = ("default", "default-drr", "checkset")


class DatasetError(ValueError):
    """A dataset folder, manifest or split file is not usable; the message says why."""


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
            t = pd.concat([g.iloc[even_subsample(len(g), per_class)] for _, g in t.groupby("label", sort=True)])
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

    def with_split(self, roles, description: str) -> "ImageDataset":
        """A copy whose ``split`` column is ``roles`` (one per row: train / val / test, or "" to
        drop the row), e.g. one fold of :mod:`cbirlib.datasets.splits`; the classes stay the same."""
        roles = np.asarray(roles, dtype=object)
        if len(roles) != len(self.table):
            raise DatasetError(f"{len(roles)} roles for {len(self.table)} images")
        bad = sorted(set(roles.tolist()) - set(SPLITS) - {""})
        if bad:
            raise DatasetError(f"unknown split names {bad}; use {SPLITS} or '' (dropped)")
        table = self.table.assign(split=roles)
        table = table[table.split != ""].reset_index(drop=True)
        return replace(self, table=table, provenance=self.provenance | {"split": description})


def counts_long(ds: ImageDataset) -> pd.DataFrame:
    """Tidy (label, split, images, source='ours') rows."""
    c = ds.counts().stack().rename("images").reset_index()
    return c.assign(source="ours")[["label", "split", "images", "source"]]


def counts_with_paper(ds: ImageDataset) -> pd.DataFrame:
    """Our counts plus the paper's 1000/100/100 rows for the classes the paper also has."""
    from .. import paper

    theirs = paper.dataset_counts()
    theirs = theirs[theirs.label.isin(ds.classes)]
    return pd.concat([counts_long(ds), theirs], ignore_index=True)


def sources_table(ds: ImageDataset) -> pd.DataFrame:
    """Images per source volume with modality, package and licence (default-style manifests)."""
    cols = [c for c in ("label", "volume", "patient", "modality", "package", "licence", "simulated") if c in ds.table]
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
    """A built dataset by name (:data:`BUILT`; must be built: ``make data``); a folder with a
    ``manifest.csv`` -> that manifest; any other folder -> :func:`load_image_folder`."""
    if str(data) in BUILT:
        root = paths.data_dir() / str(data)
        if not (root / "manifest.csv").exists():
            how = "cbir data build --drr" if str(data) == "default-drr" else "cbir data build"
            raise DatasetError(f"the {data} dataset is not built yet ({root}); run `make data` or `{how}`")
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
    name = str(data) if str(data) in BUILT else str(root)
    return ImageDataset(root, name, sorted(table.label.unique()), table, resize, prov)
