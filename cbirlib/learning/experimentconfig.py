"""What one classification run is: its configuration (:class:`ExperimentConfig`, defaults from the
paper's Table IV), its domains (plaintext or MTCE at a block size), what it does differently from
the paper, and Table IV beside it. Checked on construction: a configuration that cannot run raises
:class:`ExperimentError` with the reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from .. import paper
from ..core import keys

#: the models a run can fine-tune (:mod:`cbirlib.learning.models` builds them); here, without torch,
#: so that what only plans or checks a run (the workflow, the parameter checks) never imports it
MODEL_NAMES = ("vgg16", "vit")
TRAINABLE = ("all", "head")
KEY_MODES = ("per-image", "shared")
SPLIT_SCHEMES = ("slab", "kfold", "volume")
SCHEDULES = ("constant", "warmup-cosine")
_PAPER_SPLIT = "/".join(str(n) for n in paper.DATASET_SPLIT.values())


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
    every epoch, as the paper). ``schedule`` (``trainable="all"``): ``constant`` learning rates (the
    paper) or ``warmup-cosine`` (linear warm-up over the first tenth of the steps, then cosine decay
    to zero, per step). ``head_epochs`` (``trainable="all"``): epochs that train the new layers
    alone before ``epochs`` of fine-tuning every weight (0: none, as the paper). ``amp``: bfloat16 autocast for the forward pass (on CUDA, and on CPUs: fast
    where they have bfloat16 instructions). ``split``: ``slab`` (the dataset's own split column), ``kfold``
    (fold ``fold`` of ``folds`` over slabs) or ``volume`` (fold ``fold`` of a grouped k-fold by
    volume: held-out patients). ``key_expansion``: how keys expand into permutations
    (:data:`cbirlib.core.keys.EXPANSIONS`; 2, the default, is the fast one; 1 reproduces runs made
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
    image_size: int = paper.ASSUMED_IMAGE_SIZE
    trainable: str = "all"
    epochs: int = paper.TRAINING_SETUP["epochs"]
    batch_size: int = paper.TRAINING_SETUP["batch_size"]
    lr: float = paper.TRAINING_SETUP["learning_rate"]
    backbone_lr: float | None = None
    patience: int | None = None
    schedule: str = "constant"
    head_epochs: int = 0
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
        if self.model not in MODEL_NAMES:
            raise ExperimentError(f"unknown model {self.model!r}; choose one of {MODEL_NAMES}")
        if self.trainable not in TRAINABLE:
            raise ExperimentError(f"trainable must be one of {TRAINABLE}, got {self.trainable!r}")
        if self.key_mode not in KEY_MODES:
            raise ExperimentError(f"key_mode must be one of {KEY_MODES}, got {self.key_mode!r}")
        if self.split not in SPLIT_SCHEMES:
            raise ExperimentError(f"split must be one of {SPLIT_SCHEMES}, got {self.split!r}")
        for name in ("epochs", "batch_size", "image_size", "folds"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ExperimentError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not isinstance(self.head_epochs, int) or isinstance(self.head_epochs, bool) or self.head_epochs < 0:
            raise ExperimentError(f"head_epochs must be a non-negative integer, got {self.head_epochs!r}")
        if self.schedule not in SCHEDULES:
            raise ExperimentError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
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
        setup = paper.TRAINING_SETUP
        for name, theirs in (("epochs", setup["epochs"]), ("batch_size", setup["batch_size"]),
                             ("lr", setup["learning_rate"]), ("image_size", paper.ASSUMED_IMAGE_SIZE)):
            if getattr(self, name) != theirs:
                out.append(f"{name} {getattr(self, name)} (paper: {theirs})")
        if self.trainable == "all" and self.backbone_lr not in (None, self.lr):
            out.append(f"pretrained layers trained at learning rate {self.backbone_lr:g} (paper: {self.lr:g} "
                       "for every layer)")
        if self.trainable == "all" and self.head_epochs:
            out.append(f"{self.head_epochs} epochs training the new layers alone first (linear probing, then "
                       "fine-tuning; paper: every weight from the start)")
        if self.trainable == "all" and self.schedule != "constant":
            out.append("learning rates warmed up over the first tenth of the steps, then cosine decay to zero "
                       "(paper: constant)")
        if self.patience is not None:
            out.append(f"early stopping after {self.patience} epochs without a better validation accuracy "
                       f"(paper: all {self.epochs} epochs)")
        if self.amp:
            out.append("mixed precision (bfloat16 autocast); the paper does not say")
        if self.train_per_class is not None:
            out.append(f"{self.train_per_class} training images per class (paper: {paper.DATASET_SPLIT['train']})")
        if self.key_mode != "per-image":
            out.append("one shared key for all images (paper: a key per image)")
        if self.split == "kfold":
            out.append(f"fold {self.fold} of {self.folds}-fold cross-validation over slabs (paper: one {_PAPER_SPLIT} split)")
        if self.split == "volume":
            out.append(f"fold {self.fold} of held-out-patient folds (paper: one {_PAPER_SPLIT} split)")
        return out


def setup_table(cfg: ExperimentConfig) -> pd.DataFrame:
    """Table IV beside this run's setup (tidy: parameter, value, source)."""
    ours = {"pretrained": cfg.weights != "none", "num_classes": 3, "optimizer": "Adam",
            "learning_rate": cfg.lr, "loss": "CrossEntropyLoss", "epochs": cfg.epochs,
            "batch_size": cfg.batch_size, "image_size": cfg.image_size,
            "trainable": "all weights" if cfg.trainable == "all" else "linear head on a frozen trunk",
            "weights": cfg.weights, "key_mode": cfg.key_mode, "substitution_strength": cfg.strength}
    theirs = dict(paper.TRAINING_SETUP) | {"image_size": f"{paper.ASSUMED_IMAGE_SIZE} (assumed)",
                                           "trainable": "all weights (assumed)", "weights": "ImageNet (assumed)",
                                           "key_mode": "per-image", "substitution_strength": "not stated"}
    rows = [dict(model=cfg.model, parameter=k, value=str(theirs[k]), source="paper") for k in ours]
    rows += [dict(model=cfg.model, parameter=k, value=str(v), source="ours") for k, v in ours.items()]
    return pd.DataFrame(rows)
