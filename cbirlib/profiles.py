"""Named parameter sets ("profiles") of the same code: ``ci`` (smallest; what nbval re-executes),
``cpu`` (the default of ``make book``: minutes on 2 cores) and ``paper`` (paper scale, for a GPU).

A notebook's parameters default to ``None`` meaning "the profile's value"; any of them can be set
explicitly from papermill, which wins over the profile.
"""

from __future__ import annotations

PROFILE_NAMES = ("ci", "cpu", "paper")

PROFILES: dict[str, dict[str, dict]] = {
    "00_data": {
        # check_models: head-only models trained on the default data that classify the real radiographs;
        # drr: also train on the simulated-radiograph variant (data/default-drr, built by make book)
        "ci": {"montage_per_class": 4, "check_models": ["vit"], "drr": False},
        "cpu": {"montage_per_class": 6, "check_models": ["vit", "vgg16"], "drr": True},
        "paper": {"montage_per_class": 8, "check_models": ["vit", "vgg16"], "drr": True},
    },
    "01_encryption": {
        "ci": {"images_per_class": 2, "throughput_images": 16},
        "cpu": {"images_per_class": 10, "throughput_images": 64},
        "paper": {"images_per_class": 100, "throughput_images": 256},
    },
    "02_classification": {
        # ci: the smallest run that still shows plaintext > 8-px > 1-px blocks
        "ci": {"image_size": 56, "trainable": "head", "epochs": 30, "batch_size": 32, "lr": 1e-3,
               "train_per_class": 30, "val_per_class": 12, "test_per_class": 24,
               "domains": ["plain", 8, 1]},
        # cpu: frozen pretrained trunk, cached features, trained linear head; all default data
        "cpu": {"image_size": 112, "trainable": "head", "epochs": 100, "batch_size": 32, "lr": 1e-3,
                "train_per_class": None, "val_per_class": None, "test_per_class": None,
                "domains": ["plain", 16, 8, 4, 1]},
        # paper: Table IV (all weights trained, 100 epochs, batch 32, lr 0.001), for a GPU; bfloat16
        # autocast on CUDA so that both models x 3 domains finish in minutes (recorded as a difference)
        "paper": {"image_size": 224, "trainable": "all", "epochs": 100, "batch_size": 32, "lr": 1e-3,
                  "train_per_class": None, "val_per_class": None, "test_per_class": None,
                  "domains": ["plain", 8, 1], "amp": True},
    },
    "04_quantization": {
        "ci": {"finetune_epochs": 10, "calib_images": 16},
        "cpu": {"finetune_epochs": 30, "calib_images": 64},
        "paper": {"finetune_epochs": 100, "calib_images": 256},
    },
    "03_retrieval": {
        "ci": {"n_queries": 3, "domains": ["plain", 8, 1]},
        "cpu": {"n_queries": 6, "domains": ["plain", 8, 1]},
        "paper": {"n_queries": 8, "domains": ["plain", 8, 1]},
    },
    "05_security": {
        "ci": {"image_size": 112, "block_sizes": [8, 14, 16], "strengths": [0, 255], "jigsaw_images": 2,
               "shared_images": 2, "kpa_image_size": 32, "kpa_pairs": [1, 2, 5], "kpa_test_images": 3,
               "probe_image_size": 56, "probe_per_class": 24, "probe_block_sizes": [14, 8, 1]},
        "cpu": {"image_size": 224, "block_sizes": [4, 8, 14, 16, 32], "strengths": [0, 255], "jigsaw_images": 3,
                "shared_images": 4, "kpa_image_size": 64, "kpa_pairs": [1, 2, 5, 10], "kpa_test_images": 6,
                "probe_image_size": 112, "probe_per_class": None, "probe_block_sizes": [16, 8, 4, 1]},
        "paper": {"image_size": 224, "block_sizes": [4, 8, 14, 16, 32], "strengths": [0, 64, 255],
                  "jigsaw_images": 9, "shared_images": 8, "kpa_image_size": 112, "kpa_pairs": [1, 2, 5, 10],
                  "kpa_test_images": 24, "probe_image_size": 224, "probe_per_class": None,
                  "probe_block_sizes": [16, 8, 4, 1]},
    },
    "06_key_aware": {
        "ci": {"image_size": 56, "epochs": 30, "train_per_class": 30, "val_per_class": 12, "test_per_class": 24,
               "fresh_keys": 2},
        "cpu": {"image_size": 112, "epochs": 100, "train_per_class": None, "val_per_class": None,
                "test_per_class": None, "fresh_keys": 3},
        "paper": {"image_size": 224, "epochs": 100, "train_per_class": None, "val_per_class": None,
                  "test_per_class": None, "fresh_keys": 5},
    },
}


def resolve(notebook: str, profile: str, **parameters) -> dict:
    """The notebook's parameters: explicit values, else the profile's; an unknown profile or a
    parameter the profile does not define (left as None) is a clear error."""
    if profile not in PROFILE_NAMES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {PROFILE_NAMES}")
    table = PROFILES.get(notebook)
    if table is None:
        raise ValueError(f"no profiles for notebook {notebook!r}")
    base = table[profile]
    out = {"profile": profile}
    for name, value in parameters.items():
        if value is None:
            if name not in base:
                raise ValueError(f"parameter {name!r} is None and profile {profile!r} has no value for it")
            value = base[name]
        out[name] = value
    return out
