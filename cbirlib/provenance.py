"""What a run used: software versions, device, dataset and weights records (JSON-ready)."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

from . import __version__

PACKAGES = ("torch", "torchvision", "timm", "numpy", "pandas", "scikit-image", "scikit-learn",
            "onnx", "onnxruntime", "cryptography", "pillow", "nibabel", "matplotlib")

#: what the embedded default data is, and is not, in a few plain sentences
DEFAULT_DATA_LIMITS = (
    "Chest images are slices of ONE patient's chest CT (lung window), not chest radiographs.",
    "Bone images are slices of ONE patient's head CT in a bone window, not radiographs of hands or skulls.",
    "Brain images come from three T1 MRI volumes: the MNI152 template (an average of 152 people), "
    "Colin27 (one person) and one ITK example subject.",
    "Slices of one volume are correlated; train/val/test are contiguous slabs with a 10 mm gap, "
    "so no test image is a near-copy of a training image, but all splits share the same patients.",
    "The paper used 1,200 images per class (1000/100/100); the default dataset is smaller (see counts). "
    "Paper-scale runs need your own folder of images (one sub-folder per class).",
)


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def device_record() -> dict:
    """The compute device a run uses (CUDA if available, else CPU) and thread count."""
    import torch

    if torch.cuda.is_available():
        return {"device": "cuda", "name": torch.cuda.get_device_name(0), "cuda": torch.version.cuda}
    return {"device": "cpu", "name": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads()}


def environment() -> dict:
    return {
        "cbirlib": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "device": device_record(),
    }
