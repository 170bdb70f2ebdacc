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
