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
