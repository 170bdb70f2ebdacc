"""One training and evaluation path for VGG-16 and ViT, plaintext or MTCE-encrypted.

dataset (name or folder) -> split images at ``image_size`` -> optional MTCE encryption (per-image
keys derived from a seeded master key, as the paper's protocol, or one shared key) -> the model's
preprocessing -> fine-tuning (``trainable="all"``: every weight, as Table IV; ``"head"``: frozen
pretrained trunk, cached pooled features, a trained linear head) -> best epoch on validation ->
predictions on the test split.

Seeded and deterministic on the CPU: the same configuration gives the same numbers.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from . import cipher, data as cbir_data, keys, models, paths, provenance

TRAINABLE = ("all", "head")
KEY_MODES = ("per-image", "shared")


class ExperimentError(ValueError):
    """A configuration that cannot run; the message says why."""


@dataclass(frozen=True)
class Domain:
    """Plaintext (``block_size=None``) or MTCE at a block size."""

    block_size: int | None = None

    @classmethod
    def parse(cls, spec) -> Domain:
        """``"plain"``/``"plaintext"``, an int block size, or ``"b8"``/``"8"``."""
        if isinstance(spec, Domain):
            return spec
        if isinstance(spec, str) and spec.lower() in ("plain", "plaintext"):
            return cls(None)
        try:
            b = int(spec[1:] if isinstance(spec, str) and spec.lower().startswith("b") else spec)
        except (TypeError, ValueError):
            raise ExperimentError(f"unknown domain {spec!r}: use 'plain' or a block size such as 8") from None
        if b < 1:
            raise ExperimentError(f"block size must be >= 1, got {b}")
        return cls(b)

    @property
    def name(self) -> str:
        return "plaintext" if self.block_size is None else f"MTCE {self.block_size}-px blocks"


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything one run depends on. Defaults are the paper's Table IV where it says anything."""

    model: str = "vgg16"
    weights: str = "auto"
    data: str = "default"
    domains: tuple = ("plain", 8, 1)
    strength: int = 255
    swap: bool = True
    key_mode: str = "per-image"
    image_size: int = 224
    trainable: str = "all"
    epochs: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    train_per_class: int | None = None
    val_per_class: int | None = None
    test_per_class: int | None = None
    seed: int = 0
    device: str = "auto"
    profile: str = "paper"

    def __post_init__(self) -> None:
        if self.model not in models.MODEL_NAMES:
            raise ExperimentError(f"unknown model {self.model!r}; choose one of {models.MODEL_NAMES}")
        if self.trainable not in TRAINABLE:
            raise ExperimentError(f"trainable must be one of {TRAINABLE}, got {self.trainable!r}")
        if self.key_mode not in KEY_MODES:
            raise ExperimentError(f"key_mode must be one of {KEY_MODES}, got {self.key_mode!r}")
        for name in ("epochs", "batch_size", "image_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ExperimentError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.model == "vgg16" and self.image_size < 32:
            raise ExperimentError(f"VGG-16 needs image_size >= 32, got {self.image_size}")
        if self.model == "vit" and self.weights != "torchvision" and self.image_size % 14:
            raise ExperimentError(f"the ViT-S/14 needs image_size a multiple of 14, got {self.image_size}")
        if not self.lr > 0:
            raise ExperimentError(f"lr must be positive, got {self.lr!r}")
        for d in self.domains:
            b = Domain.parse(d).block_size
            if b is not None and self.image_size % b:
                raise ExperimentError(f"block size {b} does not divide image size {self.image_size} "
                                      "(padding policy 'error'); choose a divisor or another image size")
        keys.CipherParams(8, self.strength, self.swap)  # validates strength and swap

    def record(self) -> dict:
        return asdict(self) | {"domains": [Domain.parse(d).name for d in self.domains]}

    def differences_from_paper(self) -> list[str]:
        """Plain statements of what this run does differently from Table IV."""
        out = []
        if self.trainable == "head":
            out.append("frozen pretrained trunk with cached pooled features and a trained linear head "
                       "(the paper fine-tunes all weights)")
        for name, paper in (("epochs", 100), ("batch_size", 32), ("lr", 1e-3), ("image_size", 224)):
            if getattr(self, name) != paper:
                out.append(f"{name} {getattr(self, name)} (paper: {paper})")
        if self.train_per_class is not None:
            out.append(f"{self.train_per_class} training images per class (paper: 1000)")
        if self.key_mode != "per-image":
            out.append("one shared key for all images (paper: a key per image)")
        return out


def device_for(spec: str = "auto") -> torch.device:
    """CUDA when available (``auto``), else CPU."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


# --------------------------------------------------------------------------- data

@dataclass
class SplitData:
    images: np.ndarray  # (N, S, S, 3) uint8 as the model sees them (encrypted or not)
    labels: np.ndarray  # (N,) int64
    ids: list[str]


def domain_key(cfg: ExperimentConfig, domain: Domain) -> keys.Key:
    """The seeded key material of a domain: a master key (per-image mode) or a shared key."""
    params = keys.CipherParams(domain.block_size, cfg.strength, cfg.swap)
    kind = "master" if cfg.key_mode == "per-image" else "shared"
    return keys.from_seed(cfg.seed, params, kind)


def prepare_splits(cfg: ExperimentConfig, dataset: cbir_data.ImageDataset, domain: Domain
                   ) -> dict[str, SplitData]:
    """Load train/val/test at ``cfg.image_size`` and encrypt them for ``domain`` (every image
    under its own key in per-image mode)."""
    out = {}
    limits = {"train": cfg.train_per_class, "val": cfg.val_per_class, "test": cfg.test_per_class}
    for split, per_class in limits.items():
        images, labels, ids = dataset.load(split, cfg.image_size, per_class)
        if len(images) == 0:
            raise ExperimentError(f"the {split} split of {dataset.name} is empty")
        if domain.block_size is not None:
            key = domain_key(cfg, domain)
            images = (cipher.encrypt_with_ids(images, ids, key) if key.kind == "master"
                      else cipher.encrypt(images, key))
        out[split] = SplitData(images, labels, ids)
    return out


# --------------------------------------------------------------------------- training

@dataclass
class DomainResult:
    domain: Domain
    history: pd.DataFrame  # epoch, train_loss, val_accuracy
    best_epoch: int
    y_true: np.ndarray
    y_pred: np.ndarray
    test_ids: list[str]
    seconds: float
    weights: dict = field(default_factory=dict)
    feature_model: models.FeatureModel | None = None  # Psi, when run_domain(keep_model=True)
    extras: dict = field(default_factory=dict)  # keep_model: features, head, labels, splits


def _batches(n: int, batch_size: int, generator: torch.Generator | None):
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for s in range(0, n, batch_size):
        yield order[s:s + batch_size]


def _features(bundle: models.ModelBundle, images: np.ndarray, device: torch.device, batch_size: int,
              desc: str, progress: bool) -> torch.Tensor:
    model = bundle.model.to(device).eval()
    out = []
    with torch.no_grad():
        for idx in tqdm(list(_batches(len(images), batch_size, None)), desc=desc, leave=False,
                        disable=not progress):
            x = bundle.preprocess(images[idx.numpy()]).to(device)
            out.append(models.pooled_features(model, x).float().cpu())
    return torch.cat(out)


def _feature_cache_path(cfg: ExperimentConfig, dataset: cbir_data.ImageDataset, domain: Domain,
                        split: str, bundle: models.ModelBundle) -> Path:
    key = json.dumps({"dataset": cbir_data.dataset_record(dataset), "split": split,
                      "per_class": getattr(cfg, f"{split}_per_class"), "image_size": cfg.image_size,
                      "domain": domain.block_size, "strength": cfg.strength, "swap": cfg.swap,
                      "key_mode": cfg.key_mode, "seed": cfg.seed, "model": cfg.model,
                      "weights": bundle.provenance.weights, "weights_sha256": bundle.provenance.sha256,
                      "code": [hashlib.sha256(Path(f).read_bytes()).hexdigest()
                               for f in (__file__, models.__file__, cipher.__file__)]},
                     sort_keys=True, default=str)
    return paths.cache_dir() / "features" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.pt"


class LinearHead(nn.Module):
    """A linear classifier whose weight can pass through ``weight_transform`` (e.g. fake int8
    quantization with a straight-through gradient, for quantization-aware fine-tuning)."""

    def __init__(self, in_features: int, num_classes: int, weight_transform=None) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, num_classes)
        self.weight_transform = weight_transform

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        w = self.linear.weight if self.weight_transform is None else self.weight_transform(self.linear.weight)
        return nn.functional.linear(z, w, self.linear.bias)


def fit_linear_head(z: dict[str, torch.Tensor], y: dict[str, np.ndarray], epochs: int, batch_size: int,
                    lr: float, seed: int, init: LinearHead | None = None, weight_transform=None,
                    progress: bool = False) -> tuple[LinearHead, pd.DataFrame, int]:
    """Adam + cross-entropy on features ``z["train"]``; the epoch with the best validation accuracy
    is kept. ``init`` starts from an existing head (fine-tuning); ``weight_transform`` applies in
    the forward pass. Returns (head, history, best epoch)."""
    torch.manual_seed(seed)
    head = LinearHead(z["train"].shape[1], int(max(y["train"].max(), y["val"].max())) + 1, weight_transform)
    if init is not None:
        head.linear.load_state_dict(init.linear.state_dict())
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    y_train = torch.as_tensor(y["train"])
    gen = torch.Generator().manual_seed(seed)
    history, best = [], (-1.0, 0, None)
    for epoch in tqdm(range(1, epochs + 1), desc="epochs", leave=False, disable=not progress):
        head.train()
        total = 0.0
        for idx in _batches(len(y_train), batch_size, gen):
            opt.zero_grad()
            loss = loss_fn(head(z["train"][idx]), y_train[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        head.eval()
        with torch.no_grad():
            val_acc = float((head(z["val"]).argmax(1).numpy() == y["val"]).mean())
        history.append(dict(epoch=epoch, train_loss=total / len(y_train), val_accuracy=val_acc))
        if val_acc > best[0]:
            best = (val_acc, epoch, copy.deepcopy(head.linear.state_dict()))
    head.linear.load_state_dict(best[2])
    return head.eval(), pd.DataFrame(history), best[1]


def standardise(feats: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Standardise features with the training split's mean and std; a feature that is constant
    on the training split (e.g. a ReLU channel that never fires) keeps std 1, so unseen values
    are not blown up by a division by ~0."""
    mean, std = feats["train"].mean(0), feats["train"].std(0)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return {s: (f - mean) / std for s, f in feats.items()}, mean, std


def _train_head(cfg, feats: dict[str, torch.Tensor], splits, progress):
    """Returns history, best epoch, test predictions, the standardisation and the head."""
    z, mean, std = standardise(feats)
    y = {s: splits[s].labels for s in splits}
    head, history, best_epoch = fit_linear_head(z, y, cfg.epochs, cfg.batch_size, cfg.lr, cfg.seed,
                                                progress=progress)
    with torch.no_grad():
        pred = head(z["test"]).argmax(1).numpy()
    return history, best_epoch, pred, (mean, std), head


def _train_all(cfg, bundle: models.ModelBundle, splits, device, progress):
    torch.manual_seed(cfg.seed)
    model = bundle.model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss_fn = nn.CrossEntropyLoss()
    train = splits["train"]
    gen = torch.Generator().manual_seed(cfg.seed)

    def predict(split: SplitData) -> np.ndarray:
        model.eval()
        preds = []
        with torch.no_grad():
            for idx in _batches(len(split.labels), cfg.batch_size, None):
                x = bundle.preprocess(split.images[idx.numpy()]).to(device)
                preds.append(model(x).argmax(1).cpu())
        return torch.cat(preds).numpy()

    history, best = [], (-1.0, 0, None)
    for epoch in tqdm(range(1, cfg.epochs + 1), desc="epochs", leave=False, disable=not progress):
        model.train()
        total = 0.0
        for idx in _batches(len(train.labels), cfg.batch_size, gen):
            x = bundle.preprocess(train.images[idx.numpy()]).to(device)
            y = torch.as_tensor(train.labels[idx.numpy()]).to(device)
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        val_acc = float((predict(splits["val"]) == splits["val"].labels).mean())
        history.append(dict(epoch=epoch, train_loss=total / len(train.labels), val_accuracy=val_acc))
        if val_acc > best[0]:
            best = (val_acc, epoch, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[2])
    return pd.DataFrame(history), best[1], predict(splits["test"])


def run_domain(cfg: ExperimentConfig, dataset: cbir_data.ImageDataset, domain, progress: bool = True,
               cache_features: bool = True, keep_model: bool = False) -> DomainResult:
    """Train and evaluate one model on one domain; ``keep_model`` keeps Psi (the feature model:
    pooled standardised features in head mode, the penultimate layer after full fine-tuning)."""
    domain = Domain.parse(domain)
    start = time.perf_counter()
    device = device_for(cfg.device)
    bundle = models.build_model(cfg.model, len(dataset.classes), cfg.weights, cfg.image_size, cfg.seed)
    splits = prepare_splits(cfg, dataset, domain)
    if cfg.trainable == "head":
        feats = {}
        for split in splits:
            path = _feature_cache_path(cfg, dataset, domain, split, bundle)
            if cache_features and path.exists():
                feats[split] = torch.load(path, weights_only=True)
                continue
            feats[split] = _features(bundle, splits[split].images, device, cfg.batch_size,
                                     f"{cfg.model} {domain.name} {split} features", progress)
            if cache_features:
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.save(feats[split], path)
        history, best_epoch, pred, (mean, std), head = _train_head(cfg, feats, splits, progress)
        psi = models.FeatureModel(bundle, "pooled", mean, std) if keep_model else None
        extras = {"features": feats, "head": head, "labels": {s: splits[s].labels for s in splits}}
    else:
        history, best_epoch, pred = _train_all(cfg, bundle, splits, device, progress)
        psi = models.FeatureModel(bundle, "penultimate") if keep_model else None
        extras = {}
    if keep_model:
        extras["splits"] = splits
    return DomainResult(domain, history, best_epoch, splits["test"].labels, pred, splits["test"].ids,
                        time.perf_counter() - start, bundle.provenance.record(), psi,
                        extras if keep_model else {})


@dataclass
class Experiment:
    config: ExperimentConfig
    classes: list[str]
    results: list[DomainResult]
    provenance: dict


def run_experiment(cfg: ExperimentConfig, progress: bool = True) -> Experiment:
    """Every domain of ``cfg`` for its model, with the run's provenance."""
    dataset = cbir_data.open_dataset(cfg.data, seed=cfg.seed)
    start = time.perf_counter()
    requested = cfg.weights
    cfg = replace(cfg, weights=models.resolve_weights(cfg.model, cfg.weights))  # warns once for auto
    results = [run_domain(cfg, dataset, d, progress) for d in cfg.domains]
    prov = {"config": cfg.record() | {"weights_requested": requested}, "differences_from_paper": cfg.differences_from_paper(),
            "dataset": cbir_data.dataset_record(dataset), "weights": results[0].weights,
            "keys": {d.domain.name: domain_key(cfg, d.domain).record() for d in results if d.domain.block_size},
            "environment": provenance.environment(), "device": str(device_for(cfg.device)),
            "wall_seconds": time.perf_counter() - start}
    return Experiment(cfg, dataset.classes, results, prov)


def with_overrides(cfg: ExperimentConfig, **overrides) -> ExperimentConfig:
    """``cfg`` with the non-None ``overrides`` applied (papermill parameters)."""
    return replace(cfg, **{k: (tuple(v) if k == "domains" else v) for k, v in overrides.items() if v is not None})


__all__ = ["Domain", "ExperimentConfig", "ExperimentError", "Experiment", "DomainResult", "SplitData",
           "prepare_splits", "run_domain", "run_experiment", "device_for", "with_overrides"]


def setup_table(cfg: ExperimentConfig) -> pd.DataFrame:
    """Table IV beside this run's setup (tidy: parameter, value, source)."""
    from . import paper

    ours = {"pretrained": cfg.weights != "none", "num_classes": 3, "optimizer": "Adam",
            "learning_rate": cfg.lr, "loss": "CrossEntropyLoss", "epochs": cfg.epochs,
            "batch_size": cfg.batch_size, "image_size": cfg.image_size,
            "trainable": "all weights" if cfg.trainable == "all" else "linear head on a frozen trunk",
            "weights": cfg.weights, "key_mode": cfg.key_mode, "substitution_strength": cfg.strength}
    theirs = dict(paper.TRAINING_SETUP) | {"image_size": "224 (assumed)", "trainable": "all weights (assumed)",
                                           "weights": "ImageNet (assumed)", "key_mode": "per-image",
                                           "substitution_strength": "not stated"}
    rows = [dict(model=cfg.model, parameter=k, value=str(theirs[k]), source="paper") for k in ours]
    rows += [dict(model=cfg.model, parameter=k, value=str(v), source="ours") for k, v in ours.items()]
    return pd.DataFrame(rows)
