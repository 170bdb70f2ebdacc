"""The workflow: sweep files, the book's dependency graph, cluster profiles, a tiny sweep run,
killed half way and resumed."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from cbirlib import paths, profiles
from cbirlib.datasets import data
from cbirlib.learning.experimentconfig import Domain
from cbirlib.studies import classificationstudy as cs
from cbirlib.workflow import bookjobs, driver, sweeps

ROOT = paths.project_root()


def snakemake(*args, env=None, timeout=300, cwd=ROOT):
    cmd = [sys.executable, "-m", "snakemake", *args, "--snakefile", str(ROOT / "workflow" / "Snakefile"),
           "--directory", str(cwd)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd)


@pytest.fixture()
def scratch_project(tmp_path):
    """A project folder that shares this checkout's workflow, notebooks and data but has its own
    results (and Snakemake state)."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("workflow", "notebooks", "data", "pyproject.toml"):
        (project / name).symlink_to(ROOT / name)
    return project


# --------------------------------------------------------------------------- sweep files

@pytest.mark.parametrize("name", sweeps.sweep_names())
def test_every_sweep_file_expands_to_valid_unique_points(name):
    sweep = sweeps.load_sweep(name)
    assert sweep.points, name
    runner = sweeps.kind_module(sweep.kind)
    for pid, point in sweep.points.items():
        clean = {k: v for k, v in point.items() if not k.startswith("_")}
        assert runner.point_id(clean) == pid
        runner.check_point(clean)
        if sweep.kind == "classification":
            cs.point_config(clean)  # a valid ExperimentConfig
        r = sweep.resources_for(point)
        assert r["threads"] >= 1 and r["mem_mb"] > 0 and r["runtime"] > 0 and r["gpu"] in (0, 1)


def test_the_classification_sweep_holds_the_minimum_grid():
    points = [p for p in sweeps.load_sweep("classification").points.values() if p.get("split", "slab") == "kfold"]
    folds = {p["folds"] for p in points}
    assert len(folds) == 1
    k = folds.pop()

    def have(**kw):
        return {p["fold"] for p in points if all(str(p.get(a)) == str(v) for a, v in kw.items())}

    for domain in ("plain", 8, 1):
        keys = ("per-image",) if domain == "plain" else ("per-image", "shared")
        for key in keys:
            assert have(model="vit", trainable="all", domain=domain, key_mode=key) == set(range(k)), (domain, key)
        assert have(model="vgg16", trainable="all", domain=domain, key_mode="per-image") == set(range(k)), domain
    for model in ("vit", "vgg16"):
        for domain in ("plain", 8, 1):
            seeds = {p["seed"] for p in points if p["model"] == model and p["trainable"] == "head"
                     and str(p["domain"]) == str(domain)}
            assert len(seeds) >= 3, (model, domain, seeds)


@pytest.mark.parametrize("text, match", [
    ("name: bad\nchapter: x\nkind: classification\narms: []\ncolour: red\n", "unknown key"),
    ("name: other\nchapter: x\nkind: classification\narms: []\n", "must equal the file name"),
    ("name: bad\nchapter: x\nkind: regression\narms: []\n", "unknown kind"),
    ("name: bad\nchapter: x\nkind: classification\narms:\n  - grid: {domain: [8], colour: [1]}\n", "unknown point parameter"),
    ("name: bad\nchapter: x\nkind: classification\narms:\n  - grid: {domain: 8}\n", "must be lists"),
    ("name: bad\n  chapter: [\n", "not valid YAML"),
])
def test_broken_sweep_files_are_clear_errors(tmp_path, text, match):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(bookjobs.WorkflowError, match=match):
        sweeps.load_sweep(tmp_path / "bad.yaml")


def test_unknown_sweep_names_the_known_ones():
    with pytest.raises(bookjobs.WorkflowError, match="ci-tiny"):
        sweeps.load_sweep("no-such-sweep")


def test_plaintext_has_no_key_mode_copies():
    sweep = sweeps.load_sweep("ci-tiny")
    assert all(p.get("key_mode", "per-image") == "per-image" for p in sweep.points.values()
               if Domain.parse(p["domain"]).block_size is None)


# --------------------------------------------------------------------------- dry runs

@pytest.mark.parametrize("name", sweeps.sweep_names())
def test_every_sweep_plans(name):
    proc = snakemake(sweeps.aggregate_target(name), "--dry-run", "--cores", "2", "--forcerun",
                     "sweep_aggregate")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "sweep_aggregate" in proc.stdout


def test_book_graph_declares_the_chapters_dependencies():
    proc = snakemake("notebooks", "--dag", "--cores", "1", "--forceall")
    assert proc.returncode == 0, proc.stderr[-2000:]
    labels, edges = {}, set()
    for line in proc.stdout.splitlines():
        line = line.strip()
        if "[label" in line and "->" not in line:
            labels[line.split("[")[0].strip()] = line.split('label = "')[1].split('"')[0].split("\\n")[0]
        elif "->" in line:
            a, b = (x.strip().rstrip(";") for x in line.split("->"))
            edges.add((a, b))
    named = {(labels[a], labels[b]) for a, b in edges}
    assert ("chapter_02_classification", "chapter_05_security") in named
    assert ("chapter_05_security", "chapter_06_key_aware") in named
    for nb in bookjobs.chapters():
        if nb != bookjobs.SCORECARD:
            assert (f"chapter_{nb}", f"chapter_{bookjobs.SCORECARD}") in named, nb
    assert ("features_vgg16_more", "chapter_02_classification") in named
    assert ("features_vgg16_paper", "chapter_04_quantization") in named
    assert ("features_vgg16_more", "chapter_04_quantization") not in named  # 04 reads only 8-px blocks
    assert ("keyaware_features", "chapter_06_key_aware") in named
    assert ("features_vit_paper", "keyaware_features") in named


GPU_SWEEP = """
name: gpu-check
chapter: 02_classification
kind: classification
fixed: {data: default, weights: none, image_size: 28, trainable: head, epochs: 1, split: kfold, folds: 3}
resources: {threads: 2, mem_mb: 3000, runtime: 15}
arms:
  - name: cpu
    fixed: {model: vit}
    grid: {domain: [plain], seed: [0], fold: [0]}
  - name: gpu
    fixed: {model: vit, device: cuda}
    resources: {gpu: 1, threads: 4, mem_mb: 16000, runtime: 30}
    grid: {domain: [14], seed: [0], fold: [0]}
"""


def test_slurm_profile_submits_the_resources_each_point_asks_for(tmp_path, scratch_project):
    sweep_dir = tmp_path / "sweeps"
    sweep_dir.mkdir()
    (sweep_dir / "gpu-check.yaml").write_text(GPU_SWEEP)
    fake = tmp_path / "bin"
    fake.mkdir()
    log, ids = tmp_path / "sbatch.log", tmp_path / "ids"
    (fake / "sbatch").write_text(textwrap.dedent(f"""\
        #!/usr/bin/env bash
        id=$(( $(wc -l < {ids} 2>/dev/null || echo 0) + 5001 ))
        echo "$id" >> {ids}
        printf '%s\\n' "$*" >> {log}
        echo "$id"
        """))
    for status in ("sacct", "squeue"):  # every submitted job fails at once
        (fake / status).write_text(f"#!/usr/bin/env bash\nwhile read -r id; do echo \"$id|FAILED\"; done < {ids}\n")
    (fake / "sacctmgr").write_text("#!/usr/bin/env bash\necho your-account\n")
    for f in fake.iterdir():
        f.chmod(0o755)
    env = os.environ | {"PATH": f"{fake}:{os.environ['PATH']}", "CBIR_SWEEPS_DIR": str(sweep_dir),
                        "CBIR_HOME": str(scratch_project)}
    proc = snakemake(sweeps.aggregate_target("gpu-check"), "--workflow-profile",
                     str(ROOT / "workflow" / "profiles" / "slurm"), "--slurm-init-seconds-before-status-checks",
                     "1", "--slurm-status-command", "sacct", "--retries", "0", env=env, timeout=240, cwd=scratch_project)
    assert proc.returncode != 0  # the fake cluster fails every job: we only look at what was submitted
    calls = log.read_text().splitlines()
    assert len(calls) == 2, calls
    gpu = next(c for c in calls if "b14" in c)
    cpu = next(c for c in calls if "plain" in c)
    assert "--gpus=1" in gpu and "--cpus-per-task=4" in gpu and "--mem 16000" in gpu and "-t 30" in gpu
    assert "--gpus" not in cpu and "--cpus-per-task=2" in cpu and "--mem 3000" in cpu and "-t 15" in cpu
    assert all("-A your-account" in c and "-p cpu" in c for c in calls)


def test_kubernetes_profile_plans_gpu_requests(tmp_path):
    sweep_dir = tmp_path / "sweeps"
    sweep_dir.mkdir()
    (sweep_dir / "gpu-check.yaml").write_text(GPU_SWEEP)
    env = os.environ | {"CBIR_SWEEPS_DIR": str(sweep_dir)}
    proc = snakemake(sweeps.aggregate_target("gpu-check"), "--dry-run", "--workflow-profile",
                     str(ROOT / "workflow" / "profiles" / "kubernetes"), env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    blocks = proc.stdout.split("rule sweep_point:")[1:]
    gpu = next(b for b in blocks if "b14" in b)
    cpu = next(b for b in blocks if "plain" in b)
    assert "gpu=1" in gpu and "mem_mb=16000" in gpu and "gpu_manufacturer=nvidia" in gpu
    assert "gpu=0" in cpu.split("\n\n")[0]
    assert "/mnt/cbir/" in proc.stdout  # outputs travel through the persistent volume


# --------------------------------------------------------------------------- a tiny sweep, killed and resumed

def test_tiny_sweep_runs_resumes_after_a_kill_and_tests_every_image_once(scratch_project, monkeypatch):
    env = os.environ | {"CBIR_HOME": str(scratch_project), "CBIR_THREADS": "1"}
    cmd = [sys.executable, "-m", "cbirlib.workflow", "run", "--sweep", "ci-tiny", "--cores", "1"]
    points = scratch_project / "results" / "sweeps" / "ci-tiny" / "points"
    proc = subprocess.Popen(cmd, cwd=scratch_project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and not list(points.glob("*/point.json")):
        time.sleep(0.5)
    time.sleep(1.0)  # let the next point start, so the kill interrupts one half way
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {p.parent.name: p.stat().st_mtime_ns for p in points.glob("*/point.json")}
    planned = set(sweeps.load_sweep("ci-tiny").points)
    assert 0 < len(done) < len(planned)
    monkeypatch.setenv("CBIR_HOME", str(scratch_project))
    planned_outputs = driver.plan(driver.snakemake_command([sweeps.aggregate_target("ci-tiny")], 1, {},
                                                   extra=["--forcerun", "sweep_aggregate"]))
    rerun = {Path(o).parent.name for o in planned_outputs if o.endswith("point.json")}
    assert rerun == planned - set(done), "a restart plans exactly the missing points"
    proc = subprocess.run(cmd, cwd=scratch_project, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = {p.parent.name: p.stat().st_mtime_ns for p in points.glob("*/point.json")}
    assert set(after) == planned
    assert all(after[pid] == t for pid, t in done.items()), "points that had finished ran again"
    assert not list(points.glob(".*")), "no half-written point folder is left behind"
    acc = pd.read_csv(scratch_project / "results" / "sweeps" / "ci-tiny" / "accuracy.csv")
    fp32 = acc[(acc.variant == "fp32") & (acc.seed.astype(str) == "0")]
    images = len(data.open_dataset("default").table)
    assert (fp32.n == images).all() and fp32.complete.all() and (fp32.folds_run == 3).all()
    assert ((fp32.ci_low <= fp32.value) & (fp32.value <= fp32.ci_high)).all()
    prov = json.loads((scratch_project / "results" / "sweeps" / "ci-tiny" / "provenance.json").read_text())
    assert prov["tables"]["accuracy"]["points_missing"] == []
    real_load = sweeps.load_sweep

    def renamed(name):  # the sweep file after its arm was renamed: finished points keep their ids
        sweep = real_load(name)
        for point in sweep.points.values():
            point["arm"] = "renamed arm"
        return sweep

    monkeypatch.setattr(sweeps, "load_sweep", renamed)
    sweeps.aggregate_sweep("ci-tiny")
    table = pd.read_csv(scratch_project / "results" / "sweeps" / "ci-tiny" / "points.csv")
    assert set(table.arm) == {"renamed arm"}, "a table names arms as the sweep file does now"


def test_touching_one_chapter_reruns_it_and_what_reads_it(tmp_path):
    """The plan after touching notebooks/03: the retrieval chapter and the scorecard, nothing else."""
    import shutil

    project = tmp_path / "p"
    project.mkdir()
    shutil.copytree(ROOT / "notebooks", project / "notebooks")
    for name in ("workflow", "cbirlib", "pyproject.toml"):
        (project / name).symlink_to(ROOT / name)
    (project / "data").mkdir()  # the checkout's data, but the DRR variant is this build's own output
    for entry in (ROOT / "data").iterdir():
        if entry.name != "default-drr":
            (project / "data" / entry.name).symlink_to(entry)
    outputs = [project / "book" / "executed" / f"{nb}.ipynb" for nb in bookjobs.chapters()]
    stamps = [project / "build" / "features" / "cpu" / "default" / f"{m}_{d}.done" for m, d in bookjobs.feature_jobs("cpu")]
    stamps.append(project / "build" / "features" / "cpu" / "default" / bookjobs.KEY_AWARE_STAMP)
    stamps.append(project / "data" / "default-drr" / "manifest.csv")  # a job's output too, before the chapters
    time.sleep(0.05)
    for f in stamps + outputs:  # a finished build: every output newer than every input
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("{}")
        time.sleep(0.002)
    env = os.environ | {"CBIR_HOME": str(project)}
    nb = project / "notebooks" / "03_retrieval.ipynb"
    time.sleep(0.05)
    nb.touch()
    proc = snakemake("notebooks", "--summary", "--rerun-triggers", "mtime", "--cores", "1", "--config", "profile=cpu",
                     env=env, cwd=project)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split("\t") for line in proc.stdout.splitlines() if "\t" in line]
    header = rows[0]
    pending = sorted(Path(r[header.index("output_file")]).stem for r in rows[1:] if r[header.index("plan")] != "no update")
    assert pending == ["03_retrieval", "99_scorecard"], pending


@pytest.mark.parametrize("profile", ["ci", "cpu"])
def test_feature_jobs_split_by_model_and_domains_and_chapters_wait_only_for_what_they_read(profile):
    groups = bookjobs.feature_groups(profile)
    assert sorted((m, d) for m, _, ds in groups for d in ds) == sorted(bookjobs.feature_jobs(profile))
    assert all(set(ds) <= set(bookjobs.PAPER_DOMAINS) for _, g, ds in groups if g == "paper's domains")
    assert {f"features {m} ({g})" for m, g, _ in groups} <= set(bookjobs.PRIORITY)
    assert bookjobs.chapter_features("02_classification", profile) == bookjobs.feature_jobs(profile)
    assert bookjobs.chapter_features("04_quantization", profile) == [("vgg16", "8")]
    assert bookjobs.chapter_features("06_key_aware", profile) == [("vit", "plain")]
    assert bookjobs.chapter_features("05_security", profile) == []
    check_models = profiles.PROFILES["00_data"][profile]["check_models"]
    assert sorted(bookjobs.chapter_features("00_data", profile)) == sorted((m, "plain") for m in check_models)
    names = {driver.job_name(f"build/features/{profile}/default/{m}_{d}.done") for m, _, ds in groups for d in ds}
    assert names == {f"features {m} ({g})" for m, g, _ in groups}
    assert driver.job_name(f"build/features/{profile}/default/{bookjobs.KEY_AWARE_STAMP}") == "features key-aware"


def test_job_seconds_come_from_snakemake_s_own_stamps():
    log = ("[Tue Dec  1 13:34:54 2026]\nlocalrule chapter_02_classification:\n    input: a\n"
           "    output: book/executed/02_classification.ipynb\n    log: x\n    jobid: 14\n"
           "[Tue Dec  1 13:34:55 2026]\nlocalrule features:\n    output: build/features/cpu/default/vit_8.done\n"
           "    jobid: 3\n[Tue Dec  1 13:35:40 2026]\nFinished jobid: 14 (Rule: chapter_02_classification)\n"
           "[Tue Dec  1 13:36:00 2026]\nFinished jobid: 3 (Rule: features)\n")
    assert driver.job_seconds(log) == {"02_classification": 46.0, "features vit (paper's domains)": 65.0}


def test_layout_warnings_become_errors_in_the_chapters_kernels():
    env = {"PYTHONWARNINGS": "ignore::DeprecationWarning"}
    bookjobs.kernel_warnings(env)
    bookjobs.kernel_warnings(env)  # idempotent
    filters = env["PYTHONWARNINGS"].split(",")
    assert filters[0] == "ignore::DeprecationWarning" and len(filters) == len(set(filters)) == 4
    code = ("import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt\n"
            "fig, ax = plt.subplots(figsize=(0.5, 0.5)); ax.set_ylabel('x' * 300); fig.tight_layout()")
    proc = subprocess.run([sys.executable, "-c", code], env=os.environ | env, capture_output=True, text=True)
    assert proc.returncode != 0 and "Tight layout not applied" in proc.stderr


def test_the_driver_s_examples_hold():
    import doctest

    result = doctest.testmod(driver)
    assert result.attempted > 0, "the driver's docstrings hold examples"
    assert result.failed == 0
