"""Features of images through a network, cached by content, and Psi, the server's feature model.

:func:`extract` computes the pooled features of a batch of uint8 images (encrypted or not) through
a model; :class:`FeatureModel` (Psi) is what the data owner uploads and the cloud server runs.

Both cache by content, so every chapter and job that asks for the same numbers shares one
computation, whichever runs first. An entry is addressed by what determines it and nothing
else: the images' bytes (after encryption, so the cipher, its keys and the split are all in
there), the fingerprint of the weights that produce the features, the layer, the input size, and
the source of the code that computes them; anything that changes the numbers changes the key.
Entries are ``<cache>/features/<key>.pt`` files written atomically (temporary name, then rename),
so jobs running side by side never read a half-written one.
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

from . import models, paths, runtime
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


def content_hash(images: np.ndarray) -> str:
    """sha256 (hex) of an array's shape, dtype and bytes."""
    a = np.ascontiguousarray(images)
    h = hashlib.sha256(f"{a.shape}|{a.dtype}|".encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def cache_path(*parts: str) -> Path:
    """The cache entry for the key made of ``parts``."""
    key = hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]
    return paths.cache_dir() / "features" / f"{key}.pt"


def cached(images: np.ndarray, compute: Callable[[np.ndarray], torch.Tensor], *key: str,
           enabled: bool = True) -> torch.Tensor:
    """``compute(images)``, read from the cache when an entry for (``key``, the images' content)
    exists, else computed and stored. ``key`` must name everything besides the images that
    determines the result (weights fingerprint, layer, input size)."""
    if not enabled:
        return compute(images)
    path = cache_path(_CODE, *key, content_hash(images))
    if path.exists():
        try:
            return torch.load(path, weights_only=True)
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError):
            path.unlink(missing_ok=True)  # a damaged entry: compute it again
    out = compute(images)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".part")
    os.close(fd)
    try:
        torch.save(out, tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out


def extract(bundle: ModelBundle, images: np.ndarray, *, batch_size: int = 32, device: torch.device | str = "cpu",
            cache: bool = True, progress: bool = False, desc: str = "features") -> torch.Tensor:
    """Pooled features (see :func:`cbirlib.models.pooled_features`) of uint8 images (N, S, S, 3)
    through ``bundle``'s model in eval mode; float32 (N, D) on the CPU. Cached by content."""
    runtime.limit_threads()
    model = bundle.model

    def compute(x: np.ndarray) -> torch.Tensor:
        m = model.to(device).eval()
        out = []
        with torch.no_grad():
            for s in tqdm(range(0, len(x), batch_size), desc=desc, leave=False, disable=not progress):
                out.append(pooled_features(m, bundle.preprocess(x[s:s + batch_size]).to(device)).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, 0)

    return cached(images, compute, "pooled", fingerprint(model, CLASSIFIER_PREFIXES),
                  str(bundle.preprocess), enabled=cache)


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
        dim = self._embed(torch.zeros(1, 3, p.image_size, p.image_size)).shape[1] if mean is None else len(mean)
        self.register_buffer("mean", torch.zeros(dim) if mean is None else mean.float().clone())
        self.register_buffer("std", torch.ones(dim) if std is None else std.float().clone())

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        m = self.backbone.eval()
        with torch.no_grad():
            if self.layer == "pooled" or not isinstance(m, models.VGG16):
                return pooled_features(m, x)
            return m.forward_features(x)  # VGG-16 fc7

    @property
    def dim(self) -> int:
        return len(self.mean)

    def embeddings(self, images, batch_size: int = 64, cache: bool = True) -> torch.Tensor:
        """(N, S, S, 3) uint8 -> (N, D) float32 raw (unstandardised) features on the CPU, cached
        by content (see the module docstring)."""
        runtime.limit_threads()
        device = self.mean.device

        def compute(x: np.ndarray) -> torch.Tensor:
            out = [self._embed(self.preprocess(x[s:s + batch_size]).to(device)).float().cpu()
                   for s in range(0, len(x), batch_size)]
            return torch.cat(out) if out else torch.zeros(0, self.dim)

        exclude = ("classifier.6.", "head.", "heads.") if self.layer == "penultimate" else CLASSIFIER_PREFIXES
        x = images.cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        hooked = any(m._forward_hooks or m._forward_pre_hooks for m in self.backbone.modules())
        return cached(x, compute, self.layer, fingerprint(self.backbone, exclude), str(self.preprocess),
                      enabled=cache and len(x) > 0 and not hooked)  # hooks change outputs, not weights

    def forward(self, images, batch_size: int = 64) -> torch.Tensor:
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
