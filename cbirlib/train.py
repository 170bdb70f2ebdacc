"""One training and evaluation path for VGG-16 and ViT, plaintext or MTCE-encrypted.

dataset (name or folder) -> split (the dataset's slab split, or one fold of a k-fold over slabs
or over volumes, :mod:`cbirlib.splits`) -> images at ``image_size`` -> optional MTCE encryption
(per-image keys derived from a seeded master key, as the paper's protocol, or one shared key) ->
the model's preprocessing -> training (``trainable="all"``: every weight, as Table IV, with an
optional lower learning rate for the pretrained layers; ``"head"``: frozen pretrained trunk,
features cached by content, a trained linear head) -> the epoch with the best validation accuracy
(:func:`fit`, optionally stopping early) -> predictions on the test images.

Seeded and deterministic on the CPU: the same configuration gives the same numbers. On a CUDA
device the batches stay on the device and ``amp=True`` trains in bfloat16 autocast (recorded).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from . import cipher, data as cbir_data, features, keys, models, provenance, runtime, splits

TRAINABLE = ("all", "head")
KEY_MODES = ("per-image", "shared")
SPLIT_SCHEMES = ("slab", "kfold", "volume")


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

    @property
    def tag(self) -> str:
        """Short id for file names and tables: ``plain`` or ``b8``."""
        return "plain" if self.block_size is None else f"b{self.block_size}"


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything one run depends on. Defaults are the paper's Table IV where it says anything.

    ``backbone_lr`` (``trainable="all"``): learning rate of the pretrained layers (None: ``lr``, as
    the paper); the new layers (VGG-16's classifier, the ViT's head) always use ``lr``.
    ``patience``: stop after this many epochs without a better validation accuracy (None: run
    every epoch, as the paper). ``split``: ``slab`` (the dataset's own split column), ``kfold``
    (fold ``fold`` of ``folds`` over slabs) or ``volume`` (fold ``fold`` of a grouped k-fold by
    volume: held-out patients). ``key_expansion``: how keys expand into permutations
    (:data:`cbirlib.keys.EXPANSIONS`; 2, the default, is the fast one; 1 reproduces runs made
    before it existed: the same keys, other ciphertexts of the same distribution).
    """

    model: str = "vgg16"
    weights: str = "auto"
    data: str = "default"
    domains: tuple = ("plain", 8, 1)
    strength: int = 255
    swap: bool = True
    key_mode: str = "per-image"
    key_expansion: int = keys.CipherParams.expansion
    image_size: int = 224
    trainable: str = "all"
    epochs: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    backbone_lr: float | None = None
    patience: int | None = None
    amp: bool = False
    train_per_class: int | None = None
    val_per_class: int | None = None
    test_per_class: int | None = None
    split: str = "slab"
    folds: int = 5
    fold: int = 0
    gap_mm: float = 10.0
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
        if self.split not in SPLIT_SCHEMES:
            raise ExperimentError(f"split must be one of {SPLIT_SCHEMES}, got {self.split!r}")
        for name in ("epochs", "batch_size", "image_size", "folds"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ExperimentError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise ExperimentError(f"patience must be a positive integer or None, got {self.patience!r}")
        if not isinstance(self.fold, int) or not 0 <= self.fold < max(self.folds, 1):
            raise ExperimentError(f"fold must be in 0..{self.folds - 1}, got {self.fold!r}")
        if self.model == "vgg16" and self.image_size < 32:
            raise ExperimentError(f"VGG-16 needs image_size >= 32, got {self.image_size}")
        if self.model == "vit" and self.weights != "torchvision" and self.image_size % 14:
            raise ExperimentError(f"the ViT-S/14 needs image_size a multiple of 14, got {self.image_size}")
        if not self.lr > 0 or (self.backbone_lr is not None and not self.backbone_lr > 0):
            raise ExperimentError(f"learning rates must be positive, got lr={self.lr!r}, backbone_lr={self.backbone_lr!r}")
        for d in self.domains:
            b = Domain.parse(d).block_size
            if b is not None and self.image_size % b:
                raise ExperimentError(f"block size {b} does not divide image size {self.image_size} "
                                      "(padding policy 'error'); choose a divisor or another image size")
        try:
            keys.CipherParams(8, self.strength, self.swap, self.key_expansion)
        except ValueError as e:
            raise ExperimentError(str(e)) from None

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
        if self.trainable == "all" and self.backbone_lr not in (None, self.lr):
            out.append(f"pretrained layers trained at learning rate {self.backbone_lr:g} (paper: {self.lr:g} "
                       "for every layer)")
        if self.patience is not None:
            out.append(f"early stopping after {self.patience} epochs without a better validation accuracy "
                       f"(paper: all {self.epochs} epochs)")
        if self.amp:
            out.append("mixed precision (bfloat16 autocast); the paper does not say")
        if self.train_per_class is not None:
            out.append(f"{self.train_per_class} training images per class (paper: 1000)")
        if self.key_mode != "per-image":
            out.append("one shared key for all images (paper: a key per image)")
        if self.split == "kfold":
            out.append(f"fold {self.fold} of {self.folds}-fold cross-validation over slabs (paper: one 1000/100/100 split)")
        if self.split == "volume":
            out.append(f"fold {self.fold} of held-out-patient folds (paper: one 1000/100/100 split)")
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
    params = keys.CipherParams(domain.block_size, cfg.strength, cfg.swap, cfg.key_expansion)
    return keys.experiment_key(cfg.seed, "owner" if cfg.key_mode == "per-image" else "shared", params)


def encrypt_for(cfg: ExperimentConfig, domain: Domain, images: np.ndarray, ids: list[str]) -> np.ndarray:
    """``images`` as the model sees them in ``domain``: plaintext, or each image under its own key
    (per-image mode, derived from its id) or all under the shared key."""
    if domain.block_size is None:
        return images
    key = domain_key(cfg, domain)
    return cipher.encrypt_with_ids(images, ids, key) if key.kind == "master" else cipher.encrypt(images, key)


def fold_dataset(cfg: ExperimentConfig, dataset: cbir_data.ImageDataset) -> cbir_data.ImageDataset:
    """The dataset with the split of ``cfg``: its own split column (``slab``), or the roles of
    fold ``cfg.fold`` of a k-fold over slabs (``kfold``) or over volumes (``volume``)."""
    if cfg.split == "slab":
        return dataset
    table = dataset.table.reset_index(drop=True)
    try:
        if cfg.split == "volume":
            folds, info = splits.volume_folds(table, None)
            if cfg.fold >= info["k"]:
                raise ExperimentError(f"fold {cfg.fold}: the held-out-patient split has only {info['k']} folds")
            roles = splits.fold_roles(table, folds, cfg.fold, cfg.gap_mm, val_from="slab-split")
            how = f"held-out-patient fold {cfg.fold} of {info['k']} (test volumes {info['test_volumes'][cfg.fold]})"
        elif splits.has_positions(table):
            folds = splits.slab_folds(table, cfg.folds)
            roles = splits.fold_roles(table, folds, cfg.fold, cfg.gap_mm)
            how = f"fold {cfg.fold} of {cfg.folds} over slabs of each (volume, plane), gap {cfg.gap_mm:g} mm"
        else:
            folds = splits.stratified_folds(table.label, cfg.folds, cfg.seed)
            roles = splits.fold_roles(table, folds, cfg.fold)
            how = (f"fold {cfg.fold} of {cfg.folds}, random stratified (no slice positions in this folder: "
                   "near-duplicate images may sit on both sides)")
    except splits.SplitError as e:
        raise ExperimentError(str(e)) from None
    return dataset.with_split(roles, how)


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
        out[split] = SplitData(encrypt_for(cfg, domain, images, ids), labels, ids)
    return out


# --------------------------------------------------------------------------- the training loop

def batches(n: int, batch_size: int, generator: torch.Generator | None) -> Iterator[torch.Tensor]:
    """Index batches over range(n): shuffled by ``generator``, in order when it is None."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for s in range(0, n, batch_size):
        yield order[s:s + batch_size]


@dataclass
class Fit:
    history: pd.DataFrame  # epoch, train_loss, val_accuracy
    best_epoch: int
    stopped_early: bool


def fit(module: nn.Module, optimizer: torch.optim.Optimizer, loss_on: Callable[[torch.Tensor], torch.Tensor],
        n_train: int, batch_size: int, predict_val: Callable[[], np.ndarray], y_val: np.ndarray, epochs: int,
        seed: int, patience: int | None = None, progress: bool = False, desc: str = "epochs") -> Fit:
    """Train ``module`` for up to ``epochs`` epochs of shuffled mini-batches (``loss_on(index
    batch)`` returns the batch's mean loss), evaluate the validation accuracy after each, keep the
    weights of the first epoch with the best one, and stop early after ``patience`` epochs without
    improvement. The module ends with the kept weights, in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    history, best = [], (-1.0, 0, None)
    stopped = False
    for epoch in tqdm(range(1, epochs + 1), desc=desc, leave=False, disable=not progress):
        module.train()
        total = 0.0
        for idx in batches(n_train, batch_size, gen):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_on(idx)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        module.eval()
        val_acc = float((predict_val() == y_val).mean())
        history.append(dict(epoch=epoch, train_loss=total / n_train, val_accuracy=val_acc))
        if val_acc > best[0]:
            best = (val_acc, epoch, {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()})
        elif patience is not None and epoch - best[1] >= patience:
            stopped = True
            break
    module.load_state_dict(best[2])
    return Fit(pd.DataFrame(history), best[1], stopped)


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
                    patience: int | None = None, progress: bool = False) -> tuple[LinearHead, pd.DataFrame, int]:
    """Adam + cross-entropy on features ``z["train"]`` through :func:`fit`. ``init`` starts from
    an existing head (fine-tuning); ``weight_transform`` applies in the forward pass. Returns
    (head, history, best epoch)."""
    torch.manual_seed(seed)
    head = LinearHead(z["train"].shape[1], int(max(y["train"].max(), y["val"].max())) + 1, weight_transform)
    if init is not None:
        head.linear.load_state_dict(init.linear.state_dict())
    y_train = torch.as_tensor(y["train"])
    loss_fn = nn.CrossEntropyLoss()

    def predict_val() -> np.ndarray:
        with torch.no_grad():
            return head(z["val"]).argmax(1).numpy()

    out = fit(head, torch.optim.Adam(head.parameters(), lr=lr), lambda idx: loss_fn(head(z["train"][idx]), y_train[idx]),
              len(y_train), batch_size, predict_val, y["val"], epochs, seed, patience, progress)
    return head.eval(), out.history, out.best_epoch


def standardise(feats: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Standardise features with the training split's mean and std; a feature that is constant
    on the training split (e.g. a ReLU channel that never fires) keeps std 1, so unseen values
    are not blown up by a division by ~0."""
    mean, std = feats["train"].mean(0), feats["train"].std(0)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return {s: (f - mean) / std for s, f in feats.items()}, mean, std


def new_layer_names(model: nn.Module) -> tuple[str, ...]:
    """Prefixes of the layers that do not come pretrained: VGG-16's classifier (fc6-fc8; the
    bundled trunk has no fc6/fc7) and a ViT's head."""
    if isinstance(model, models.VGG16):
        return ("classifier.",)
    return ("head.", "heads.")


def parameter_groups(model: nn.Module, lr: float, backbone_lr: float | None) -> list[dict]:
    """Adam parameter groups: pretrained layers at ``backbone_lr`` (or ``lr``), new layers at ``lr``."""
    new = new_layer_names(model)
    head = [p for n, p in model.named_parameters() if n.startswith(new)]
    body = [p for n, p in model.named_parameters() if not n.startswith(new)]
    return [{"params": body, "lr": lr if backbone_lr is None else backbone_lr}, {"params": head, "lr": lr}]


def predict(bundle: models.ModelBundle, images, batch_size: int, device: torch.device,
            amp: bool = False) -> np.ndarray:
    """Class predictions (N,) of ``bundle``'s model in eval mode for uint8 images (numpy or a
    tensor already on ``device``)."""
    model = bundle.model.eval()
    out = []
    with torch.no_grad(), _autocast(device, amp):
        for idx in batches(len(images), batch_size, None):
            x = bundle.preprocess(_take(images, idx, device))
            out.append(model(x).argmax(1).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)


def _take(images, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
    if isinstance(images, torch.Tensor):
        return images[idx.to(images.device)]
    return torch.from_numpy(images[idx.numpy()]).to(device)


def _autocast(device: torch.device, amp: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda")


def fine_tune(cfg: ExperimentConfig, bundle: models.ModelBundle, splits_: dict[str, SplitData],
              device: torch.device, progress: bool = False) -> Fit:
    """Every weight of ``bundle.model`` trained on the training images (Adam, cross-entropy), best
    validation epoch kept. On CUDA the uint8 images are copied to the device once."""
    torch.manual_seed(cfg.seed)
    model = bundle.model.to(device)
    on_device = {s: torch.from_numpy(d.images).to(device) if device.type == "cuda" else d.images
                 for s, d in splits_.items()}
    y_train = torch.as_tensor(splits_["train"].labels).to(device)
    opt = torch.optim.Adam(parameter_groups(model, cfg.lr, cfg.backbone_lr))
    loss_fn = nn.CrossEntropyLoss()

    def loss_on(idx: torch.Tensor) -> torch.Tensor:
        x = bundle.preprocess(_take(on_device["train"], idx, device))
        with _autocast(device, cfg.amp):
            logits = model(x)
        return loss_fn(logits.float(), y_train[idx.to(device)])

    return fit(model, opt, loss_on, len(y_train), cfg.batch_size,
               lambda: predict(bundle, on_device["val"], cfg.batch_size, device, cfg.amp),
               splits_["val"].labels, cfg.epochs, cfg.seed, cfg.patience, progress, f"{cfg.model} epochs")


# --------------------------------------------------------------------------- one domain, one experiment

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
    feature_model: features.FeatureModel | None = None  # Psi, when run_domain(keep_model=True)
    extras: dict = field(default_factory=dict)  # keep_model: features, head, labels, splits, bundle


def run_domain(cfg: ExperimentConfig, dataset: cbir_data.ImageDataset, domain, progress: bool = True,
               cache_features: bool = True, keep_model: bool = False) -> DomainResult:
    """Train and evaluate one model on one domain (on the split of ``cfg``: see
    :func:`fold_dataset`); ``keep_model`` keeps Psi (the feature model: pooled standardised
    features in head mode, the penultimate layer after full fine-tuning)."""
    runtime.limit_threads()
    domain = Domain.parse(domain)
    start = time.perf_counter()
    device = device_for(cfg.device)
    bundle = models.build_model(cfg.model, len(dataset.classes), cfg.weights, cfg.image_size, cfg.seed)
    splits_ = prepare_splits(cfg, fold_dataset(cfg, dataset), domain)
    extras: dict = {"bundle": bundle}
    if cfg.trainable == "head":
        feats = _split_features(cfg, dataset, domain, bundle, splits_, device, cache_features, progress)
        z, mean, std = standardise(feats)
        y = {s: d.labels for s, d in splits_.items()}
        head, history, best_epoch = fit_linear_head(z, y, cfg.epochs, cfg.batch_size, cfg.lr, cfg.seed,
                                                    patience=cfg.patience, progress=progress)
        with torch.no_grad():
            pred = head(z["test"]).argmax(1).numpy()
        psi = features.FeatureModel(bundle, "pooled", mean, std) if keep_model else None
        extras |= {"features": feats, "head": head, "labels": y}
    else:
        result = fine_tune(cfg, bundle, splits_, device, progress)
        history, best_epoch = result.history, result.best_epoch
        pred = predict(bundle, splits_["test"].images, cfg.batch_size, device, cfg.amp)
        psi = features.FeatureModel(bundle, "penultimate") if keep_model else None
        extras |= {"stopped_early": result.stopped_early}
    if keep_model:
        extras["splits"] = splits_
    return DomainResult(domain, history, best_epoch, splits_["test"].labels, pred, splits_["test"].ids,
                        time.perf_counter() - start, bundle.provenance.record(), psi,
                        extras if keep_model else {})


def _split_features(cfg: ExperimentConfig, dataset: cbir_data.ImageDataset, domain: Domain,
                    bundle: models.ModelBundle, splits_: dict[str, SplitData], device: torch.device, cache: bool,
                    progress: bool) -> dict[str, torch.Tensor]:
    """Frozen-trunk features of every split. With folds, the features of the whole dataset are
    computed once (an image's ciphertext does not depend on the fold, so every fold of a seed
    shares one cache entry) and each split takes its rows."""
    kw = dict(batch_size=cfg.batch_size, device=device, cache=cache, progress=progress)
    if cfg.split == "slab":
        return {s: features.extract(bundle, d.images, desc=f"{cfg.model} {domain.name} {s} features", **kw)
                for s, d in splits_.items()}
    images, _, ids = dataset.load(None, cfg.image_size)
    every = features.extract(bundle, encrypt_for(cfg, domain, images, ids),
                             desc=f"{cfg.model} {domain.name} features", **kw)
    row = {i: n for n, i in enumerate(ids)}
    return {s: every[[row[i] for i in d.ids]] for s, d in splits_.items()}


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
    cfg = replace(cfg, weights=models.resolve_weights(cfg.model, cfg.weights, warn=False))
    results = [run_domain(cfg, dataset, d, progress) for d in cfg.domains]
    prov = {"config": cfg.record() | {"weights_requested": requested}, "differences_from_paper": cfg.differences_from_paper(),
            "dataset": cbir_data.dataset_record(dataset), "weights": results[0].weights,
            "keys": {d.domain.name: domain_key(cfg, d.domain).record() for d in results if d.domain.block_size},
            "environment": provenance.environment(), "device": str(device_for(cfg.device)),
            "wall_seconds": time.perf_counter() - start}
    return Experiment(cfg, dataset.classes, results, prov)


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
