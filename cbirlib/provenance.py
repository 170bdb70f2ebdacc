"""What a run used: software versions, device, dataset and weights records (JSON-ready)."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

from . import __version__

PACKAGES = ("torch", "torchvision", "timm", "numpy", "pandas", "scikit-image", "scikit-learn",
            "onnx", "onnxruntime", "cryptography", "pillow", "nibabel", "pynrrd", "pydicom", "matplotlib",
            "snakemake")

#: what the embedded default data is, and is not, in a few plain sentences
DEFAULT_DATA_LIMITS = (
    "Chest images are slices of four patients' chest CTs (three in a lung window, one LIDC scan stored "
    "in a soft-tissue window), not chest radiographs.",
    "Bone images are slices of two patients' head CTs in a bone window (one of them a low-resolution "
    "3.2-mm scan), not radiographs of hands or skulls; with two patients, bone is the class whose "
    "held-out-patient results rest on the fewest people.",
    "Brain images come from seven T1 MRI volumes: the MNI152 template (an average of 152 people), "
    "Colin27, and five single subjects (two with contrast and a tumour, 6.5-mm slices).",
    "Slices of one volume are correlated; train/val/test are contiguous slabs with a 10 mm gap, so no "
    "test image is a near-copy of a training image, but the slab split shares patients between "
    "training and test; the held-out-patient folds do not.",
    "Class and scanner are confounded: every class comes from its own few scanners, windows and "
    "modalities, so simple intensity statistics already tell the classes apart (the probe rows show "
    "how well); an accuracy on these data measures that as much as anatomy.",
    "The paper used 1,200 images per class (1000/100/100); the default dataset has 300 per class. "
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
    """The compute device a run uses (CUDA if available, else CPU) and thread count.

    A process that has not loaded torch ran no network, so it ran on the CPU with the threads
    :func:`cbirlib.runtime.threads` gives it; torch is not imported just to say so (2-3 s of CPU
    in every chapter without a model).
    """
    torch = sys.modules.get("torch")
    if torch is None:
        from . import runtime

        return {"device": "cpu", "name": platform.processor() or platform.machine(), "threads": runtime.threads()}
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
