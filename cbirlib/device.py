"""The paper profile on a lent GPU machine, within what such a machine takes.

A lent machine (see the developers' guide) has PyTorch, timm, pandas and scikit-learn but not this
project's virtual environment, reaches no registry, and takes at most 64 MiB of files per call. So
``pack`` (here) prepares ``.device/`` (ignored by git, carried by the call): the two wheels the
machine lacks (cryptography and cffi), and each model's bundled weights in its own folder, small
enough to travel with the default dataset: VGG-16's trunk in bfloat16, the ViT's encoder as int8
with one float32 scale per output row (its bfloat16 copy would not fit). ``unpack`` (there) turns
a model's file back into the float32 cache the models load, and records how far the weights moved
(``max_abs_error``): the fine-tuning starts from these weights, a difference the results say.

``plan`` (there) runs the points of one model of a sweep (``workflow/sweeps/paper-gpu.yaml``:
Table IV first, then a lower learning rate, then k-fold arms) in order, saves each point as soon
as it ends, packs every finished point into one tar file after each (what comes back from the
machine even if the call is cut short), and starts a point only when it is expected to end before
the deadline. ``receive`` (here) unpacks such a tar into ``results/sweeps/<sweep>/points/`` and
aggregates the sweep.

Run (one model per call, see ``workflow/device/paper-run.sh``)::

    python3 -m cbirlib.device unpack vgg16
    python3 -m cbirlib.device plan vgg16 --deadline 300 --out $OUT
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
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


PLAN_SWEEP = "paper-gpu"


def plan_points(sweep_name: str, model: str) -> list[tuple[str, dict]]:
    """``(id, point)`` of ``model``'s points of the sweep in the order they run: arm by arm as the
    file lists them, inside an arm fold by fold (so that an arm cut short by the deadline has whole
    folds of every domain rather than every fold of one domain)."""
    from .workflow import sweeps

    sweep = sweeps.load_sweep(sweep_name)
    arms = list(dict.fromkeys(p.get("arm", "") for p in sweep.points.values()))
    mine = [(i, pid, p) for i, (pid, p) in enumerate(sweep.points.items()) if p.get("model") == model]
    if not mine:
        raise SystemExit(f"sweep {sweep_name!r} has no point of model {model!r}")
    mine.sort(key=lambda t: (arms.index(t[2].get("arm", "")), t[2].get("fold", 0), t[0]))
    return [(pid, p) for _, pid, p in mine]


def pack_points(points_dir: Path, tar_path: Path) -> int:
    """Every finished point folder under ``points_dir`` into one tar file, replaced atomically.
    Returns how many points it holds."""
    done = sorted(f.parent for f in points_dir.glob("*/point.json"))
    tmp = tar_path.with_name(f".{tar_path.name}.tmp")
    with tarfile.open(tmp, "w") as tar:
        for folder in done:
            tar.add(folder, arcname=folder.name)
    os.replace(tmp, tar_path)
    return len(done)


def plan(model: str, out: Path, deadline_s: float, sweep_name: str = PLAN_SWEEP, work: Path | None = None,
         log=print) -> dict:
    """Run ``model``'s points of ``sweep_name`` in :func:`plan_points` order into
    ``work/points/<id>/`` (``work`` defaults to a folder under the temporary directory), packing every finished point into
    ``out/points-<model>.tar`` after each. A point starts only when ``elapsed + expected`` stays
    under ``deadline_s``, its expected time being the last finished point's of the same arm (else
    of the run; the first point always starts). A point that raises is logged and skipped (the
first two failing with none done re-raise: the setup is broken). Returns a summary (done,
skipped, failed, seconds)."""
    from .workflow import sweeps

    start = time.perf_counter()
    work = work or Path(tempfile.gettempdir()) / f"cbir-plan-{model}"
    points_dir = work / "points"
    points_dir.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    tar_path = out / f"points-{model}.tar"
    last: dict[str, float] = {}
    done, skipped, failed = [], [], []
    for pid, point in plan_points(sweep_name, model):
        arm = point.get("arm", "")
        if (points_dir / pid / "point.json").exists():
            done.append(pid)
            continue
        expected = last.get(arm, last.get("", 0.0))
        elapsed = time.perf_counter() - start
        if last and elapsed + expected > deadline_s:  # nothing measured yet: the first point starts
            skipped.append(pid)
            log(f"skip {pid}: {elapsed:.0f} s + about {expected:.0f} s would pass the deadline of {deadline_s:.0f} s")
            continue
        t0 = time.perf_counter()
        try:
            rec = json.loads(sweeps.run_sweep_point(sweep_name, pid, points_dir / pid).read_text())
        except Exception as e:  # one failed point (say, out of memory) does not cost the others
            failed.append(pid)
            log(f"FAILED {pid} after {time.perf_counter() - t0:.0f} s: {type(e).__name__}: {e}")
            if len(failed) >= 2 and not done:
                raise
            continue
        last[arm] = last[""] = time.perf_counter() - t0
        done.append(pid)
        n = pack_points(points_dir, tar_path)
        log(f"done {pid}: accuracy {rec['accuracy']:.3f} (n={rec['counts']['test']}), "
            f"{rec['epochs_run']} epochs, {last[arm]:.0f} s; {n} points packed")
    return {"model": model, "done": done, "skipped": skipped, "failed": failed,
            "seconds": time.perf_counter() - start}


def receive(tar_path: Path, sweep_name: str = PLAN_SWEEP) -> list[Path]:
    """Unpack a tar of finished points (from :func:`plan`) into ``results/sweeps/<sweep>/points/``
    (a point already there is replaced) and aggregate the sweep. Returns the tables written."""
    import shutil

    from .workflow import sweeps

    planned = set(sweeps.load_sweep(sweep_name).points)
    dest = sweeps.sweep_results(sweep_name) / "points"
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tar_path) as tar:
        members = tar.getmembers()
        names = {m.name.split("/")[0] for m in members}
        unknown = sorted(names - planned)
        if unknown:
            raise SystemExit(f"{tar_path}: points not in sweep {sweep_name!r}: {unknown}")
        for name in sorted(names):
            data = {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in members
                    if m.isfile() and m.name.startswith(f"{name}/")}
            if "point.json" not in data:
                raise SystemExit(f"{tar_path}: point {name} has no point.json")
            tmp = dest / f".{name}.receiving"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            for rel, content in data.items():
                (tmp / rel).write_bytes(content)
            shutil.rmtree(dest / name, ignore_errors=True)
            os.replace(tmp, dest / name)
    return sweeps.aggregate_sweep(sweep_name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cbirlib.device")
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("pack", help="here: wheels and transportable weights into .device/")
    p.add_argument("models", nargs="*", default=list(MODELS))
    p = sub.add_parser("unpack", help="on the lent machine: one model's weights back into the cache")
    p.add_argument("model", choices=list(MODELS))
    p = sub.add_parser("plan", help="on the lent machine: one model's points of the GPU sweep, in order, to a deadline")
    p.add_argument("model", choices=list(MODELS))
    p.add_argument("--out", type=Path, required=True, help="folder of the tar of finished points (the call's $OUT)")
    p.add_argument("--deadline", type=float, required=True, help="seconds after which no point starts")
    p.add_argument("--sweep", default=PLAN_SWEEP)
    p.add_argument("--work", type=Path, default=None, help="where the point folders are written (default: a temporary folder)")
    p = sub.add_parser("receive", help="here: a tar of finished points into results/sweeps/<sweep>/, aggregated")
    p.add_argument("tar", type=Path)
    p.add_argument("--sweep", default=PLAN_SWEEP)
    args = parser.parse_args(argv)
    if args.action == "pack":
        out = pack(tuple(args.models))
        for f in sorted(out.rglob("*")):
            if f.is_file():
                print(f"{f.relative_to(out.parent)}  {f.stat().st_size / 2 ** 20:.1f} MiB")
    elif args.action == "unpack":
        print(json.dumps(unpack(args.model)))
    elif args.action == "plan":
        summary = plan(args.model, args.out, args.deadline, args.sweep, args.work, log=lambda m: print(m, flush=True))
        print(f"{args.model}: {len(summary['done'])} points done, {len(summary['skipped'])} skipped, "
              f"{len(summary['failed'])} failed, "
              f"{summary['seconds']:.0f} s")
    else:
        for path in receive(args.tar, args.sweep):
            print(path.relative_to(paths.project_root()) if path.is_relative_to(paths.project_root()) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
