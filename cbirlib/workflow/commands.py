"""``python -m cbirlib.workflow``: the commands the Snakefile's jobs run, ``run`` (the driver),
``notebook`` / ``book`` (variant books) and ``points`` (a sweep's state)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from .bookjobs import WorkflowError, root, run_chapter, warm_features, warm_key_aware
from .driver import run
from .sweeps import aggregate_sweep, aggregate_target, load_sweep, run_sweep_point, sweep_results
from .variants import run_data_variant, run_notebook_variant


def main(argv: list[str] | None = None) -> int:
    """``python -m cbirlib.workflow``: the commands the Snakefile's jobs run, and ``run``."""
    parser = argparse.ArgumentParser(prog="cbir workflow")
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("run", help="run the workflow for targets (e.g. notebooks, sweep_classification)")
    p.add_argument("targets", nargs="*", default=["notebooks"])
    p.add_argument("--cores", type=int, default=None)
    p.add_argument("--jobs", type=int, default=None, help="parallel jobs on a cluster")
    p.add_argument("--profile", default="cpu", help="the book's parameter profile: ci | cpu | paper")
    p.add_argument("--data", default="default")
    p.add_argument("--results-dir", default="")
    p.add_argument("--cluster", default=None, help="a workflow profile in workflow/profiles (slurm, kubernetes)")
    p.add_argument("--sweep", default=None, help="run this sweep (workflow/sweeps/<name>.yaml): every missing point, then its tables")
    p.add_argument("--dry-run", action="store_true")
    p = sub.add_parser("chapter", help="execute one chapter notebook (a job of the book)")
    p.add_argument("nb")
    p.add_argument("--out", required=True)
    p.add_argument("--profile", default="cpu")
    p.add_argument("--data", default="default")
    p.add_argument("--results-dir", default="")
    p = sub.add_parser("features", help="compute the shared frozen-trunk features of one model and its domains")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--data", default="default")
    p.add_argument("--model", required=True)
    p.add_argument("--domain", nargs="+", required=True)
    p.add_argument("--stamp", nargs="+", required=True, help="one file per domain, written when all are done")
    p = sub.add_parser("keyaware-features", help="run the key-aware study once, so its chapter finds its features cached")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--data", default="default")
    p.add_argument("--stamp", required=True, help="written when done")
    p = sub.add_parser("point", help="run one point of a sweep")
    p.add_argument("sweep")
    p.add_argument("point")
    p = sub.add_parser("aggregate", help="join a sweep's points into its tables")
    p.add_argument("sweep")
    p = sub.add_parser("points", help="list a sweep's points and whether each has run")
    p.add_argument("sweep")
    p = sub.add_parser("notebook", help="make run: one chapter with other parameters, into a variant book")
    p.add_argument("nb")
    p.add_argument("-p", "--parameters", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="a parameter (the value is YAML: lists, numbers, booleans)")
    p.add_argument("-r", "--raw", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="a parameter taken as a string")
    p.add_argument("-y", "--yaml", action="append", default=[], help="parameters as a YAML mapping")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--data", default="default")
    p.add_argument("--cores", type=int, default=None)
    p.add_argument("--name", default=None, help="the variant's folder name (default: from the chapter and parameters)")
    p = sub.add_parser("book", help="make book DATA=<folder>: every chapter on a folder, into a variant book")
    p.add_argument("--data", required=True)
    p.add_argument("--profile", default="cpu")
    p.add_argument("--cores", type=int, default=None)
    args = parser.parse_args(argv)
    if args.action == "run":
        config = {"profile": args.profile, "data": args.data} | ({"results_dir": args.results_dir} if args.results_dir else {})
        targets, extra = args.targets, []
        if args.sweep:
            load_sweep(args.sweep)  # a clear error for an unknown or broken sweep file
            targets, extra = [aggregate_target(args.sweep)], ["--forcerun", "sweep_aggregate"]
        return run(targets, args.cores, config, args.cluster, args.jobs, args.dry_run, extra)
    if args.action == "chapter":
        run_chapter(args.nb, Path(args.out), args.profile, args.data, args.results_dir)
    elif args.action == "features":
        if len(args.stamp) != len(args.domain):
            raise WorkflowError(f"{len(args.stamp)} stamps for {len(args.domain)} domains")
        counts = warm_features(args.profile, args.data, args.model, args.domain)
        for domain, stamp in zip(args.domain, map(Path, args.stamp)):
            stamp.parent.mkdir(parents=True, exist_ok=True)
            stamp.write_text(json.dumps({"model": args.model, "domain": domain, "images": counts[domain]}) + "\n")
    elif args.action == "keyaware-features":
        rows = warm_key_aware(args.profile, args.data)
        stamp = Path(args.stamp)
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(json.dumps({"study": "06_key_aware", "rows": rows}) + "\n")
    elif args.action == "point":
        print(run_sweep_point(args.sweep, args.point))
    elif args.action == "aggregate":
        for path in aggregate_sweep(args.sweep):
            print(path.relative_to(root()))
    elif args.action in ("notebook", "book"):
        from ..studies.parameters import ParameterError

        try:
            if args.action == "notebook":
                params = {k: v for k, v in args.parameters} | {k: v for k, v in args.raw}
                for text in args.yaml:
                    loaded = yaml.safe_load(text)
                    if not isinstance(loaded, dict):
                        raise ParameterError(f"-y takes a YAML mapping (name: value), got {text!r}")
                    params |= loaded
                raw = {k for k, _ in args.raw}
                index = run_notebook_variant(args.nb, {k: (str(v) if k in raw else v) for k, v in params.items()},
                                             args.profile, args.data, args.cores, args.name)
            else:
                index = run_data_variant(args.data, args.profile, args.cores)
        except (ParameterError, WorkflowError, ValueError) as e:
            print(f"workflow: error: {e}", file=sys.stderr)
            return 2
        except Exception as e:  # a chapter failed: papermill's error names the cell and the exception
            if type(e).__name__ != "PapermillExecutionError":
                raise
            print(f"workflow: error: {args.nb if args.action == 'notebook' else 'a chapter'} failed: "
                  f"{e.ename}: {e.evalue}", file=sys.stderr)
            return 2
        print(f"book: {index}")
    elif args.action == "points":
        sweep = load_sweep(args.sweep)
        for pid in sweep.points:
            done = (sweep_results(sweep.name) / "points" / pid / "point.json").exists()
            print(f"{'done   ' if done else 'missing'} {pid}")
    return 0
