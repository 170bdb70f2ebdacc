"""One training and evaluation path for VGG-16 and ViT, plaintext or MTCE-encrypted.

dataset (name or folder) -> split (the dataset's slab split, or one fold of a k-fold over slabs
or over volumes, :mod:`cbirlib.datasets.splits`) -> images at ``image_size`` -> optional MTCE encryption
(per-image keys derived from a seeded master key, as the paper's protocol, or one shared key) ->
the model's preprocessing -> training (``trainable="all"``: every weight, as Table IV, with an
optional lower learning rate for the pretrained layers; ``"head"``: frozen pretrained trunk,
features cached by content, a trained linear head) -> the epoch with the best validation accuracy
(:func:`cbirlib.learning.fitting.fit`, optionally stopping early) -> predictions on the test images.

Seeded and deterministic on the CPU: the same configuration gives the same numbers. On a CUDA
device the batches stay on the device. ``amp=True`` trains and predicts in bfloat16 autocast on
either device (recorded; on CPUs with bfloat16 instructions about 1.4-1.7x faster for the ViT).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import provenance, runtime
from ..core import cipher, keys
from ..datasets import data as cbir_data, splits
from . import features, models
from .experimentconfig import Domain, ExperimentConfig, ExperimentError
from .fitting import Fit, LinearHead, batches, fit, fit_linear_head, standardise


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


# --------------------------------------------------------------------------- end-to-end fine-tuning

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
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float = 0.1
                  ) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step learning-rate factor: linear from 1/w to 1 over the first ``w = max(1, round(
    warmup_fraction * total_steps))`` steps, then a cosine from 1 down to 0 at ``total_steps``.

    >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    >>> sched = warmup_cosine(opt, 10)
    >>> [round(sched.lr_lambdas[0](s), 3) for s in (0, 1, 5, 10)]
    [1.0, 0.97, 0.413, 0.0]
    """
    import math

    warm = max(1, round(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm + 1) / max(1, total_steps - warm))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def fine_tune(cfg: ExperimentConfig, bundle: models.ModelBundle, splits_: dict[str, SplitData],
              device: torch.device, progress: bool = False) -> Fit:
    """Every weight of ``bundle.model`` trained on the training images (Adam, cross-entropy), best
    validation epoch kept. With ``cfg.head_epochs``, the new layers are first trained alone for
    that many epochs (linear probing, then fine-tuning: Kumar et al., ICLR 2022), and the epoch
    kept is the best one of the fine-tuning that follows. On CUDA the uint8 images are copied to
    the device once."""
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

    def predict_val() -> np.ndarray:
        return predict(bundle, on_device["val"], cfg.batch_size, device, cfg.amp)

    first = None
    if cfg.head_epochs:  # linear probing first: the pretrained layers frozen (no gradients), the new ones trained
        new = new_layer_names(model)
        body = [p for n, p in model.named_parameters() if not n.startswith(new)]
        for p in body:
            p.requires_grad_(False)
        head_opt = torch.optim.Adam([p for n, p in model.named_parameters() if n.startswith(new)], lr=cfg.lr)
        first = fit(model, head_opt, loss_on, len(y_train), cfg.batch_size, predict_val, splits_["val"].labels,
                    cfg.head_epochs, cfg.seed, None, progress, f"{cfg.model} head epochs")
        for p in body:
            p.requires_grad_(True)
    steps = cfg.epochs * -(-len(y_train) // cfg.batch_size)
    scheduler = warmup_cosine(opt, steps) if cfg.schedule == "warmup-cosine" else None
    out = fit(model, opt, loss_on, len(y_train), cfg.batch_size, predict_val, splits_["val"].labels, cfg.epochs,
              cfg.seed, cfg.patience, progress, f"{cfg.model} epochs", scheduler=scheduler)
    if first is None:
        return out
    # one history: the head epochs first; the weights kept are the best epoch of the fine-tuning
    history = pd.concat([first.history, out.history.assign(epoch=out.history.epoch + cfg.head_epochs)],
                        ignore_index=True)
    return Fit(history, out.best_epoch + cfg.head_epochs, out.stopped_early)


# --------------------------------------------------------------------------- one domain, one experiment

@dataclass
class KeptModel:
    """What ``run_domain(keep_model=True)`` keeps beside the predictions."""

    bundle: models.ModelBundle  # the trained network and its preprocessing
    splits: dict[str, SplitData]  # train/val/test as the network saw them
    feature_model: features.FeatureModel  # Psi: pooled standardised features (head mode) or the penultimate layer
    head: LinearHead | None = None  # head mode: the trained linear head on Psi's output
    features: dict[str, torch.Tensor] | None = None  # head mode: frozen-trunk features per split, not standardised


@dataclass
class DomainResult:
    domain: Domain
    history: pd.DataFrame  # epoch, train_loss, val_accuracy
    best_epoch: int
    stopped_early: bool
    y_true: np.ndarray
    y_pred: np.ndarray
    test_ids: list[str]
    seconds: float
    weights: dict
    kept: KeptModel | None = None  # run_domain(keep_model=True)


def run_domain(cfg: ExperimentConfig, dataset: cbir_data.ImageDataset, domain, progress: bool = True,
               cache_features: bool = True, keep_model: bool = False) -> DomainResult:
    """Train and evaluate one model on one domain (on the split of ``cfg``: see
    :func:`fold_dataset`); ``keep_model`` keeps the network, the splits and Psi (:class:`KeptModel`)."""
    runtime.limit_threads()
    domain = Domain.parse(domain)
    start = time.perf_counter()
    device = device_for(cfg.device)
    bundle = models.build_model(cfg.model, len(dataset.classes), cfg.weights, cfg.image_size, cfg.seed)
    splits_ = prepare_splits(cfg, fold_dataset(cfg, dataset), domain)
    if cfg.trainable == "head":
        feats = _split_features(cfg, dataset, domain, bundle, splits_, device, cache_features, progress)
        z, mean, std = standardise(feats)
        y = {s: d.labels for s, d in splits_.items()}
        head, history, best_epoch = fit_linear_head(z, y, cfg.epochs, cfg.batch_size, cfg.lr, cfg.seed,
                                                    patience=cfg.patience, progress=progress)
        with torch.no_grad():
            pred = head(z["test"]).argmax(1).numpy()
        stopped_early = len(history) < cfg.epochs  # the loop ends before the last epoch only by patience
        psi, on_psi = ("pooled", mean, std), dict(head=head, features=feats)
    else:
        result = fine_tune(cfg, bundle, splits_, device, progress)
        history, best_epoch, stopped_early = result.history, result.best_epoch, result.stopped_early
        pred = predict(bundle, splits_["test"].images, cfg.batch_size, device, cfg.amp)
        psi, on_psi = ("penultimate",), {}
    kept = KeptModel(bundle, splits_, features.FeatureModel(bundle, *psi), **on_psi) if keep_model else None
    return DomainResult(domain, history, best_epoch, stopped_early, splits_["test"].labels, pred,
                        splits_["test"].ids, time.perf_counter() - start, bundle.provenance.record(), kept)


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
