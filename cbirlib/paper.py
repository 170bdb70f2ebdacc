"""The paper's numbers, transcribed once from the seed text, with table and row.

Notebooks join these into their tables (``source="paper"``); nothing else retypes them.
Source: Sadik, Samsudin, Ahmad, "Balancing Privacy and Performance: Exploring Encryption and
Quantization in Content-Based Image Retrieval Systems".
"""

from __future__ import annotations

import pandas as pd

#: Section V: "three distinct datasets, each encompassing 1200 medical images ... 1000:100:100".
#: The paper names the classes lung, brain and bone (bone, chest, MRI in its tables).
DATASET_SPLIT = {"train": 1000, "val": 100, "test": 100}
PAPER_CLASS_NAMES = {"bone": "bone", "brain": "MRI (brain)", "chest": "chest (lung)"}

#: Table IV, both models.
TRAINING_SETUP = {"pretrained": True, "num_classes": 3, "optimizer": "Adam", "learning_rate": 0.001,
                  "loss": "CrossEntropyLoss", "epochs": 100, "batch_size": 32}
#: the input size the paper does not state: 224 px, the pretrained models' own (an assumption)
ASSUMED_IMAGE_SIZE = 224


def dataset_counts() -> pd.DataFrame:
    """Tidy (class, split, images, source='paper') rows of the paper's data split."""
    rows = [dict(label=c, split=s, images=n, source="paper")
            for c in PAPER_CLASS_NAMES for s, n in DATASET_SPLIT.items()]
    return pd.DataFrame(rows)


#: Table V, "Comparative evaluation of encryption metrics: our algorithm versus AES", as printed.
TABLE_V = {
    "MTCE": {"entropy": 7.392129887, "mse": 12766.02, "ssim": 0.273204, "psnr": 7.070247655},
    "AES": {"entropy": 1.4426951601859516e-10, "mse": 2625.48, "ssim": 0.00283838, "psnr": 13.93870288},
}


def table_v() -> pd.DataFrame:
    """Tidy (method, metric, value, source='paper') rows of Table V."""
    return pd.DataFrame([dict(method=m, metric=k, value=v, source="paper")
                         for m, vals in TABLE_V.items() for k, v in vals.items()])


#: Tables VI (ViT) and VII (VGG-16): per class accuracy, precision, recall in percent, as printed.
#: Domains: plaintext, "8 Blocks", "1 Block". The paper's classes Bone, Chest, MRI are our bone,
#: chest, brain. None = "Undefined" in the paper (no predicted positives).
_TABLE_VI_VII = {
    "vit": {
        "plaintext": {"bone": (98.67, 100.00, 96.00), "chest": (97.00, 92.52, 99.00), "brain": (98.33, 98.97, 96.00)},
        "MTCE 8-px blocks": {"bone": (94.00, 87.96, 95.00), "chest": (93.33, 89.22, 91.00), "brain": (95.33, 97.78, 88.00)},
        "MTCE 1-px blocks": {"bone": (43.00, 33.79, 74.00), "chest": (66.67, None, 0.00), "brain": (73.00, 61.73, 50.00)},
    },
    "vgg16": {
        "plaintext": {"bone": (99.33, 99.01, 100.00), "chest": (99.33, 100.00, 98.00), "brain": (99.33, 99.01, 100.00)},
        "MTCE 8-px blocks": {"bone": (95.33, 94.95, 94.00), "chest": (95.33, 96.94, 95.00), "brain": (95.33, 94.17, 97.00)},
        "MTCE 1-px blocks": {"bone": (43.67, 89.47, 17.00), "chest": (43.67, 37.21, 96.00), "brain": (43.67, 78.26, 18.00)},
    },
}
#: which per-class accuracy convention each table uses (see cbirlib.learning.evaluate)
ACCURACY_CONVENTION = {"vit": "accuracy_ovr", "vgg16": "accuracy_overall"}


def table_vi_vii() -> pd.DataFrame:
    """Tidy (model, domain, class, metric, value, source='paper') rows of Tables VI and VII, values
    as fractions (0..1); the accuracy row is named after the convention the table appears to use."""
    import math

    rows = []
    for model, domains in _TABLE_VI_VII.items():
        for domain, classes in domains.items():
            for cls, (acc, prec, rec) in classes.items():
                for metric, v in ((ACCURACY_CONVENTION[model], acc), ("precision", prec), ("recall", rec)):
                    rows.append(dict(model=model, domain=domain, **{"class": cls}, metric=metric,
                                     value=math.nan if v is None else v / 100.0, source="paper"))
    return pd.DataFrame(rows)


#: Table VIII (VGG-16, 8-px blocks, last layer quantized) as printed, fractions; the fully
#: quantized model is given only in the text (:data:`FULLY_QUANTIZED`).
_TABLE_VIII = {
    "last layer (max)": {"bone": (0.94, 0.939, 0.93), "chest": (0.94, 0.958, 0.93), "brain": (0.94, 0.923, 0.96)},
    "last layer (KL)": {"bone": (0.93, 0.920, 0.93), "chest": (0.93, 0.968, 0.91), "brain": (0.93, 0.904, 0.95)},
    "last layer (99%)": {"bone": (0.946, 0.931, 0.959), "chest": (0.946, 0.968, 0.93), "brain": (0.946, 0.940, 0.95)},
}


#: the text's fully quantized VGG-16 (8-px blocks): accuracy "in all categories", and the one class
#: it recalls (brain MRI)
FULLY_QUANTIZED = {"accuracy": 0.326, "brain recall": 0.96}
#: Sec. IV, eq. (6): int8 weights take a quarter of the bytes of fp32 ones
INT8_MEMORY_RATIO = 0.25


def table_viii() -> pd.DataFrame:
    """Tidy (model, domain, variant, class, metric, value, source='paper') rows of Table VIII and
    the text's fully quantized result."""
    rows = []
    for variant, classes in _TABLE_VIII.items():
        for cls, (acc, prec, rec) in classes.items():
            for metric, v in (("accuracy_overall", acc), ("precision", prec), ("recall", rec)):
                rows.append(dict(model="vgg16", domain="MTCE 8-px blocks", variant=variant, **{"class": cls},
                                 metric=metric, value=v, source="paper"))
    rows.append(dict(model="vgg16", domain="MTCE 8-px blocks", variant="fully", **{"class": "all"},
                     metric="accuracy", value=FULLY_QUANTIZED["accuracy"], source="paper"))
    rows.append(dict(model="vgg16", domain="MTCE 8-px blocks", variant="fully", **{"class": "brain"},
                     metric="recall", value=FULLY_QUANTIZED["brain recall"], source="paper"))
    return pd.DataFrame(rows)
