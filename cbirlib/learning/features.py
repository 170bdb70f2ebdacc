"""Features of images through a network, cached by content, and Psi, the server's feature model.

:func:`extract` computes the pooled features of a batch of uint8 images (encrypted or not) through
a model; :class:`FeatureModel` (Psi) is what the data owner uploads and the cloud server runs.

Both cache by content, image by image, so every chapter and job that asks for the same numbers
shares one computation, whichever runs first, even when it asks for another grouping of the same
images (a database of train + val images finds the rows the feature job computed per split). A
row is addressed by what determines it and nothing else: the image's bytes (after encryption, so
the cipher, its keys and the split are all in there), the fingerprint of the weights that produce
the features, the layer, the input size, and the source of the code that computes them; anything
that changes the numbers changes the address. This relies on a network's output for one image not
depending on the other images of its batch (eval mode; checked bit for bit in the tests). Rows are
stored in shards, ``<cache>/features/<key>/<shard>.pt``, written atomically (temporary name, then
rename), so jobs running side by side never read a half-written one.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .. import paths, runtime
from . import models
from .models import ModelBundle, Preprocessing, WeightsProvenance, build_model, pooled_features

#: state-dict prefixes that never influence pooled (pre-classifier) features
CLASSIFIER_PREFIXES = ("classifier.", "head.", "heads.")
_CODE = hashlib.sha256(Path(models.__file__).read_bytes() + Path(__file__).read_bytes()).hexdigest()


def fingerprint(module: nn.Module, exclude: tuple[str, ...] = ()) -> str:
    """sha256 (hex) over a module's parameters and buffers (names, shapes, dtypes and bytes),
    leaving out entries whose name starts with one of ``exclude``."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        if name.startswith(exclude):
            continue
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def row_hashes(images: np.ndarray) -> list[bytes]:
    """sha256 digest (32 bytes) of each image (row along axis 0), with the row's shape and dtype."""
    a = np.ascontiguousarray(images)
    head = hashlib.sha256(f"{a.shape[1:]}|{a.dtype}|".encode())
    out = []
    for row in a:  # one hash per image, not per pixel
        h = head.copy()
        h.update(memoryview(row).cast("B"))
        out.append(h.digest())
    return out


def cache_path(*parts: str) -> Path:
    """The folder of shards for the key made of ``parts``."""
    key = hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]
    return paths.cache_dir() / "features" / key


def _shard_name(digests: list[bytes]) -> str:
    return hashlib.sha256(b"".join(digests)).hexdigest()[:32]


def _load_shard(path: Path) -> tuple[list[bytes], torch.Tensor] | None:
    try:
        obj = torch.load(path, weights_only=True)
        rows, values = obj["rows"], obj["values"]
        digests = [bytes(r) for r in rows.numpy()]
        if len(digests) != len(values):
            raise ValueError("rows and values differ in length")
        return digests, values
    except (RuntimeError, EOFError, OSError, KeyError, TypeError, ValueError, AttributeError, pickle.UnpicklingError):
        path.unlink(missing_ok=True)  # a damaged shard: its rows are computed again
        return None


def _write_shard(folder: Path, digests: list[bytes], values: torch.Tensor) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    name = _shard_name(digests)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=name, suffix=".part")
    os.close(fd)
    rows = torch.from_numpy(np.frombuffer(b"".join(digests), np.uint8).reshape(len(digests), 32).copy())
    try:
        torch.save({"rows": rows, "values": values.contiguous()}, tmp)
        os.replace(tmp, folder / f"{name}.pt")
    finally:
        Path(tmp).unlink(missing_ok=True)


def cached(images: np.ndarray, compute: Callable[[np.ndarray], torch.Tensor], *key: str,
           enabled: bool = True, batch: int | None = None) -> torch.Tensor:
    """``compute(images)``, image by image from the cache where (``key``, the image's content) has
    been computed before; only the other images go through ``compute``, and their rows are stored.

    ``compute`` works row by row: (N, ...) images -> (N, ...) tensor, row i from image i and the
    batch it ran in. With ``batch``, the images to compute are padded with zero images to a
    multiple of ``batch`` and ``compute`` must run them in batches of exactly ``batch``: a
    network's arithmetic can depend on the batch size (oneDNN picks kernels by shape) but not on
    the other images of a batch, so each row is the same number whichever grouping of images asked
    for it first, cold cache or warm. ``key`` must name everything besides the images that
    determines the result (weights fingerprint, layer, input size)."""
    if not enabled or len(images) == 0:
        return compute(images)
    digests = row_hashes(images)
    folder = cache_path(_CODE, *key, f"batch={batch}")
    found: dict[bytes, tuple[torch.Tensor, int]] = {}  # digest -> (values, row)
    wanted = set(digests)
    shards = sorted(folder.glob("*.pt")) if folder.is_dir() else []
    exact = folder / f"{_shard_name(digests)}.pt"  # the same request as before: one file to read
    for shard in ([exact] if exact in shards else []) + shards:
        if wanted.issubset(found):
            break
        loaded = _load_shard(shard) if shard.exists() else None
        for i, d in enumerate(loaded[0] if loaded else []):
            found.setdefault(d, (loaded[1], i))
    missing = [i for i, d in enumerate(digests) if d not in found]
    if missing:
        todo = np.ascontiguousarray(images)[missing]
        pad = -len(todo) % batch if batch else 0
        if pad:
            todo = np.concatenate([todo, np.zeros((pad, *todo.shape[1:]), todo.dtype)])
        fresh = compute(todo)[:len(missing)]
        for j, i in enumerate(missing):
            found.setdefault(digests[i], (fresh, j))  # a repeated image: its first row
        new = list(dict.fromkeys(digests[i] for i in missing))
        _write_shard(folder, new, torch.stack([found[d][0][found[d][1]] for d in new]))
    sample = found[digests[0]][0]
    out = torch.empty((len(digests), *sample.shape[1:]), dtype=sample.dtype)
    by_source: dict[int, tuple[torch.Tensor, list[int], list[int]]] = {}
    for pos, d in enumerate(digests):
        values, row = found[d]
        _, positions, rows = by_source.setdefault(id(values), (values, [], []))
        positions.append(pos)
        rows.append(row)
    for values, positions, rows in by_source.values():
        out[positions] = values[rows]  # one gather per shard, not per row
    return out


def network_input(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The (N, 3, S, S) input as the model runs fastest on a CPU: channels-last for VGG-16, whose
    oneDNN convolutions then take the NHWC kernels (measured 1.27x at 112 px, batch 32, one
    thread; float32 either way, features equal to rounding), unchanged for the ViT."""
    return x.contiguous(memory_format=torch.channels_last) if isinstance(model, models.VGG16) else x


def extract(bundle: ModelBundle, images: np.ndarray, *, batch_size: int = 32, device: torch.device | str = "cpu",
            cache: bool = True, progress: bool = False, desc: str = "features") -> torch.Tensor:
    """Pooled features (see :func:`cbirlib.learning.models.pooled_features`) of uint8 images (N, S, S, 3)
    through ``bundle``'s model in eval mode; float32 (N, D) on the CPU. Cached by content."""
    runtime.limit_threads()
    model = bundle.model

    def compute(x: np.ndarray) -> torch.Tensor:
        m = model.to(device).eval()
        out = []
        with torch.no_grad():
            for s in tqdm(range(0, len(x), batch_size), desc=desc, leave=False, disable=not progress):
                batch = network_input(m, bundle.preprocess(x[s:s + batch_size]).to(device))
                out.append(pooled_features(m, batch).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, 0)

    return cached(images, compute, "pooled", fingerprint(model, CLASSIFIER_PREFIXES),
                  str(bundle.preprocess), enabled=cache, batch=batch_size)


class FeatureModel(nn.Module):
    """Psi, the feature extractor the cloud server runs: uint8 images (N, S, S, 3), encrypted or
    not -> (N, D) float32 features.

    ``layer="pooled"``: the frozen trunk's pooled features (see :func:`pooled_features`),
    standardised with ``mean``/``std`` (the input of a trained linear head); ``"penultimate"``: the
    fine-tuned network's penultimate layer (VGG-16 fc7, ViT CLS token).
    """

    LAYERS = ("pooled", "penultimate")

    def __init__(self, bundle: ModelBundle, layer: str, mean: torch.Tensor | None = None,
                 std: torch.Tensor | None = None) -> None:
        super().__init__()
        if layer not in self.LAYERS:
            raise ValueError(f"layer must be one of {self.LAYERS}, got {layer!r}")
        self.backbone = bundle.model
        self.preprocess = bundle.preprocess
        self.layer = layer
        p = bundle.provenance
        self.meta = {"model": p.model, "architecture": p.architecture, "weights": p.weights,
                     "num_classes": p.num_classes, "image_size": p.image_size, "layer": layer,
                     "weights_sha256": p.sha256}
        device = next(self.backbone.parameters()).device  # the buffers live beside the network (CPU or GPU)
        dim = (self._embed(torch.zeros(1, 3, p.image_size, p.image_size, device=device)).shape[1] if mean is None
               else len(mean))
        self.register_buffer("mean", torch.zeros(dim, device=device) if mean is None else mean.float().to(device).clone())
        self.register_buffer("std", torch.ones(dim, device=device) if std is None else std.float().to(device).clone())

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        m = self.backbone.eval()
        with torch.no_grad():
            if self.layer == "pooled" or not isinstance(m, models.VGG16):
                return pooled_features(m, x)
            return m.forward_features(x)  # VGG-16 fc7

    @property
    def dim(self) -> int:
        return len(self.mean)

    def embeddings(self, images, batch_size: int = 32, cache: bool = True) -> torch.Tensor:
        """(N, S, S, 3) uint8 -> (N, D) float32 raw (unstandardised) features on the CPU, cached
        by content (see the module docstring)."""
        runtime.limit_threads()
        device = self.mean.device

        def compute(x: np.ndarray) -> torch.Tensor:
            out = [self._embed(network_input(self.backbone, self.preprocess(x[s:s + batch_size]).to(device))).float().cpu()
                   for s in range(0, len(x), batch_size)]
            return torch.cat(out) if out else torch.zeros(0, self.dim)

        exclude = ("classifier.6.", "head.", "heads.") if self.layer == "penultimate" else CLASSIFIER_PREFIXES
        x = images.cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        hooked = any(m._forward_hooks or m._forward_pre_hooks for m in self.backbone.modules())
        return cached(x, compute, self.layer, fingerprint(self.backbone, exclude), str(self.preprocess),
                      enabled=cache and len(x) > 0 and not hooked,  # hooks change outputs, not weights
                      batch=batch_size)

    def forward(self, images, batch_size: int = 32) -> torch.Tensor:
        """(N, S, S, 3) uint8 -> (N, D) standardised float32 features on the CPU."""
        return (self.embeddings(images, batch_size) - self.mean.cpu()) / self.std.cpu()

    def save(self, path: str | Path) -> Path:
        """Write meta + the weights Psi uses (not the unused classifier of a pooled VGG-16)."""
        state = {k: v for k, v in self.state_dict().items()
                 if not (self.layer == "pooled" and k.startswith("backbone.classifier."))}
        path = Path(path)
        torch.save({"format": "cbirlib-feature-model", "version": 1, "meta": self.meta, "state": state}, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "FeatureModel":
        try:
            obj = torch.load(path, weights_only=True)
            meta, state = obj["meta"], obj["state"]
            if obj.get("format") != "cbirlib-feature-model":
                raise KeyError("format")
        except (OSError, RuntimeError, KeyError, TypeError, EOFError, pickle.UnpicklingError) as e:
            raise ValueError(f"{path}: not a readable feature model ({str(e)[:120]})") from None
        if meta["model"] == "vit" and meta["weights"] == "torchvision":
            import torchvision

            bundle = ModelBundle(torchvision.models.vit_b_16(weights=None, image_size=meta["image_size"],
                                                             num_classes=meta["num_classes"]),
                                 Preprocessing(meta["image_size"]), None)
        else:
            bundle = build_model(meta["model"], meta["num_classes"], "none", meta["image_size"])
        bundle.provenance = bundle.provenance or WeightsProvenance(meta["model"], meta["architecture"],
                                                                   meta["weights"], meta["weights"],
                                                                   meta["num_classes"], meta["image_size"], "")
        fm = cls(bundle, meta["layer"], state["mean"], state["std"])
        missing, unexpected = fm.load_state_dict(state, strict=False)
        bad = [k for k in missing if not (meta["layer"] == "pooled" and k.startswith("backbone.classifier."))]
        if bad or unexpected:
            raise ValueError(f"{path}: feature model weights do not fit ({bad[:3]}, {unexpected[:3]})")
        fm.meta = meta
        return fm
