"""The paper profile on a lent GPU machine, within what such a machine takes.

A lent machine (see the developers' guide) has PyTorch, timm, pandas and scikit-learn but not this
project's virtual environment, reaches no registry, and takes at most 64 MiB of files per call. So
``pack`` (here) prepares ``.device/`` (ignored by git, carried by the call): the two wheels the
machine lacks (cryptography and cffi), and each model's bundled weights in its own folder, small
enough to travel with the default dataset: VGG-16's trunk in bfloat16, the ViT's encoder as int8
with one float32 scale per output row (its bfloat16 copy would not fit). ``unpack`` (there) turns
a model's file back into the float32 cache the models load, and records how far the weights moved
(``max_abs_error``): the fine-tuning starts from these weights, a difference the results say.

Run (one model per call, see ``workflow/device/paper-run.sh``)::

    python3 -m cbirlib.device unpack vgg16
    python3 -m cbirlib.studies.classificationstudy paper --models vgg16 --results-dir $OUT/results
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

from . import paths
from .datasets import assets

FOLDER = ".device"
WHEELS = ("cryptography==50.0.2", "cffi==2.0.0", "pycparser==2.23")
#: model -> (converted-weights cache name, ONNX asset, transport)
MODELS = {"vgg16": ("vgg16_trunk", "vgg16_onnx", "bfloat16"), "vit": ("dinov2_vits14", "vit_onnx", "int8")}


def _cache_file(model: str) -> Path:
    name, asset, _ = MODELS[model]
    return paths.cache_dir() / "weights" / f"{name}-{assets.ASSETS[asset].sha256[:16]}.pt"


def pack(models=tuple(MODELS), python_version: str = "3.12") -> Path:
    """Fill ``.device/``: ``wheels/`` for the machine's Python, ``<model>/weights.pt`` per model."""
    out = paths.project_root() / FOLDER
    (out / "wheels").mkdir(parents=True, exist_ok=True)
    platforms = [f"--platform=manylinux_2_{n}_x86_64" for n in (17, 28, 34)] + ["--platform=manylinux2014_x86_64"]
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                    f"--python-version={python_version}", "--implementation=cp", *platforms, "-d", str(out / "wheels"),
                    *WHEELS], check=True)
    for model in models:
        state = torch.load(_cache_file(model), weights_only=True)
        kind = MODELS[model][2]
        packed = {}
        for k, t in state.items():
            if kind == "bfloat16" or t.ndim < 2:
                packed[k] = {"bf16": t.to(torch.bfloat16)}
            else:
                flat = t.reshape(t.shape[0], -1)
                scale = (flat.abs().amax(dim=1) / 127.0).clamp_min(1e-12)
                packed[k] = {"q": torch.round(flat / scale[:, None]).to(torch.int8), "scale": scale, "shape": list(t.shape)}
        (out / model).mkdir(exist_ok=True)
        torch.save({"model": model, "transport": kind, "tensors": packed}, out / model / "weights.pt")
    return out


def unpack(model: str) -> dict:
    """Write ``model``'s float32 weights cache from ``.device/<model>/weights.pt`` (on the lent
    machine) and an empty stand-in for the ONNX file the cache was converted from; returns the
    transport and the largest absolute change of any weight, also written beside the cache."""
    obj = torch.load(paths.project_root() / FOLDER / model / "weights.pt", weights_only=True)
    state, errors = {}, []
    for k, p in obj["tensors"].items():
        if "bf16" in p:
            state[k] = p["bf16"].float()
            errors.append(float(p["bf16"].float().abs().max()) * 2 ** -8)  # bf16 keeps 8 significant bits
        else:
            state[k] = (p["q"].float() * p["scale"][:, None]).reshape(p["shape"])
            errors.append(float(p["scale"].max()) / 2)
    cache = _cache_file(model)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, cache)
    stand_in = assets.ASSETS[MODELS[model][1]].path()
    stand_in.parent.mkdir(parents=True, exist_ok=True)
    stand_in.touch()
    record = {"model": model, "transport": obj["transport"], "max_abs_error_bound": max(errors)}
    cache.with_suffix(".transport.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cbirlib.device")
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("pack", help="here: wheels and transportable weights into .device/")
    p.add_argument("models", nargs="*", default=list(MODELS))
    p = sub.add_parser("unpack", help="on the lent machine: one model's weights back into the cache")
    p.add_argument("model", choices=list(MODELS))
    args = parser.parse_args(argv)
    if args.action == "pack":
        out = pack(tuple(args.models))
        for f in sorted(out.rglob("*")):
            if f.is_file():
                print(f"{f.relative_to(out.parent)}  {f.stat().st_size / 2 ** 20:.1f} MiB")
    else:
        print(json.dumps(unpack(args.model)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
