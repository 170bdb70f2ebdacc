"""The driver: Snakemake on the machine's cores or a cluster profile, its log in ``build/logs/``,
a status line (jobs done, what runs, time left from the last recorded run), stale locks and
finished sweep points settled before a run."""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

from .bookjobs import KEY_AWARE_STAMP, PAPER_DOMAINS, WorkflowError, root, snakefile


def _timings_files(profile: str) -> list[Path]:
    return [root() / "build" / "timings" / f"{profile}.json", root() / "workflow" / "timings" / f"{profile}.json"]


def expected_seconds(profile: str) -> dict[str, float]:
    """Seconds each job took in the last recorded run at ``profile`` (this machine's record first,
    then the committed one)."""
    for f in _timings_files(profile):
        if f.exists():
            return json.loads(f.read_text())
    return {}


def job_name(output: str) -> str:
    p = Path(output)
    if p.suffix == ".ipynb":
        return p.stem
    if p.parts[:2] == ("build", "features"):  # a feature job writes a stamp per domain
        if p.name == KEY_AWARE_STAMP:
            return "features key-aware"
        model, domain = p.stem.split("_", 1)
        return f"features {model} " + ("(paper's domains)" if domain in PAPER_DOMAINS else "(more block sizes)")
    if "points" in p.parts:
        return "point " + p.parent.name
    return output


def _with(cmd: list[str], *flags: str) -> list[str]:
    """``cmd`` with ``flags`` before its ``--config`` (which takes every word after it)."""
    i = cmd.index("--config") if "--config" in cmd else len(cmd)
    return cmd[:i] + list(flags) + cmd[i:]


def plan(cmd: list[str]) -> list[str]:
    """The outputs Snakemake would (re)make for ``cmd`` (from ``--summary``)."""
    proc = subprocess.run(_with(cmd, "--summary"), capture_output=True, text=True, cwd=root())
    if proc.returncode != 0:
        raise WorkflowError("snakemake could not plan the run:\n" + proc.stderr[-3000:])
    rows = [line.split("\t") for line in proc.stdout.splitlines() if "\t" in line]
    if not rows:
        return []
    header = rows[0]
    i_out, i_plan = header.index("output_file"), header.index("plan")
    return [r[i_out] for r in rows[1:] if r[i_plan] != "no update"]


def _notebook_progress(path: Path) -> str:
    try:
        nb = json.loads(path.read_text())
    except (OSError, ValueError):
        return ""
    cells = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    done = sum(1 for c in cells if c.get("metadata", {}).get("papermill", {}).get("status") == "completed")
    return f"cell {done}/{len(cells)}" if cells else ""


_TQDM_CELLS = re.compile(rb"\| *(\d+)/(\d+) \[")


def _log_progress(log: Path) -> str:
    """How far a chapter job is, from the last progress line papermill wrote to its log (the
    notebook itself is written only at the start, every 30 s and at the end).

    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "job.log"
    >>> _ = f.write_bytes(b"Executing:   3%|3  | 1/36 [00:00<00:21]\\rExecuting:  11%|#  | 4/36 [00:04<00:33]")
    >>> _log_progress(f)
    'cell 4/36'
    """
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 4096))
            tail = f.read()
    except OSError:
        return ""
    found = _TQDM_CELLS.findall(tail)
    return f"cell {int(found[-1][0])}/{int(found[-1][1])}" if found else ""


def _fmt(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60:d}:{seconds % 60:02d}"


class Progress:
    """Watches the planned outputs while Snakemake runs and prints one status line at a time."""

    def __init__(self, outputs: list[str], cores: int, expected: dict[str, float], stream=sys.stderr) -> None:
        # one output per job (a job with several outputs, e.g. a model's feature stamps, counts once)
        first: dict[str, str] = {}
        for o in outputs:
            first.setdefault(job_name(o), o)
        self.outputs = list(first.values())
        self.cores, self.expected, self.stream = cores, expected, stream
        self.start = time.time()
        self.finished: dict[str, float] = {}
        self.started: dict[str, float] = {}
        self._stop = threading.Event()

    def _state(self) -> tuple[list[str], list[str]]:
        running = []
        for out in self.outputs:
            name = job_name(out)
            p = root() / out
            if name in self.finished:
                continue
            log = self._log_of(out)
            if p.exists() and p.stat().st_mtime >= self.start and not self._still_writing(out):
                self.finished[name] = time.time() - self.started.get(name, self.start)
            elif (log and log.exists() and log.stat().st_mtime >= self.start) or (p.exists() and p.stat().st_mtime >= self.start):
                self.started.setdefault(name, time.time())
                detail = (_log_progress(log) if log else "") or \
                    (_notebook_progress(p) if out.endswith(".ipynb") and p.exists() else "")
                running.append(f"{name}{f' ({detail})' if detail else ''}")
        return running, list(self.finished)

    def _log_of(self, out: str) -> Path | None:
        p = Path(out)
        if p.suffix == ".ipynb":
            return root() / "build" / "logs" / f"{p.parent.as_posix().replace('/', '_')}-{p.stem}.log"
        return None

    def _still_writing(self, out: str) -> bool:
        if not out.endswith(".ipynb"):
            return False
        text = _notebook_progress(root() / out)
        if not text:
            return True
        done, total = text.split()[1].split("/")
        return done != total

    def line(self) -> str:
        running, finished = self._state()
        left = 0.0
        for out in self.outputs:
            name = job_name(out)
            if name in self.finished:
                continue
            est = self.expected.get(name, 30.0)
            left += max(est - (time.time() - self.started[name]), 5.0) if name in self.started else est
        eta = f", ~{_fmt(left / max(self.cores, 1))} left" if self.expected else ""
        run = f"; running: {', '.join(running)}" if running else ""
        return f"[{_fmt(time.time() - self.start)}] {len(finished)}/{len(self.outputs)} jobs done{eta}{run}"

    def watch(self, every: float = 15.0) -> None:
        last = ""
        while not self._stop.wait(every):
            text = self.line()
            if text != last:
                print(text, file=self.stream, flush=True)
                last = text

    def stop(self) -> None:
        self._stop.set()


def snakemake_command(targets: list[str], cores: int, config: dict, workflow_profile: str | None = None,
                      jobs: int | None = None, extra: list[str] | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "snakemake", *targets, "--snakefile", str(snakefile()), "--directory", str(root()),
           "--rerun-triggers", "mtime", "--rerun-incomplete", "--cores", str(cores), "--nocolor"]
    if workflow_profile:
        prof = Path(workflow_profile)
        if not prof.is_dir():
            prof = root() / "workflow" / "profiles" / str(workflow_profile)
        if not (prof / "config.yaml").exists():
            raise WorkflowError(f"no workflow profile {workflow_profile!r} ({prof}/config.yaml missing)")
        cmd += ["--workflow-profile", str(prof)]
    if jobs:
        cmd += ["--jobs", str(jobs)]
    cmd += list(extra or [])
    if config:  # last: --config takes every word after it
        cmd += ["--config", *[f"{k}={v}" for k, v in config.items()]]
    return cmd


def run(targets: list[str], cores: int | None = None, config: dict | None = None, workflow_profile: str | None = None,
        jobs: int | None = None, dry_run: bool = False, extra: list[str] | None = None, progress: bool = True) -> int:
    """Run Snakemake for ``targets``; its log goes to ``build/logs/snakemake.log`` and a status line
    (jobs done, what runs, how far each chapter is, time left) to stderr. Returns its exit code."""
    cores = cores or os.cpu_count() or 1
    config = dict(config or {})
    cmd = snakemake_command(targets, cores, config, workflow_profile, jobs, extra)
    if dry_run:
        return subprocess.run(_with(cmd, "--dry-run"), cwd=root()).returncode
    _clear_stale_lock(cmd)
    if any("results/sweeps/" in t for t in targets):
        _settle_finished_points()
    outputs = plan(cmd)
    logs = root() / "build" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / "snakemake.log"
    if not outputs:
        print("workflow: everything is up to date", file=sys.stderr)
        return 0
    profile = config.get("profile", "cpu")
    watcher = Progress(outputs, cores, expected_seconds(profile))
    names = list(dict.fromkeys(job_name(o) for o in outputs))  # a job with several outputs once
    print(f"workflow: {len(names)} jobs on {cores} core(s): {', '.join(names[:12])}"
          f"{' ...' if len(names) > 12 else ''} (log: {log_path.relative_to(root())})", file=sys.stderr, flush=True)
    thread = threading.Thread(target=watcher.watch, daemon=True) if progress else None
    if thread:
        thread.start()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    with open(log_path, "w") as log:
        rc = subprocess.run(cmd, cwd=root(), stdout=log, stderr=subprocess.STDOUT).returncode
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    watcher.stop()
    wall = time.time() - t0
    print(f"{watcher.line()}; {_fmt(wall)} wall, CPU {100 * cpu / max(wall, 1e-9):.0f} % on average",
          file=sys.stderr, flush=True)
    if rc != 0:
        print(f"workflow: snakemake failed (exit {rc}); the end of {log_path.relative_to(root())}:", file=sys.stderr)
        print("".join(log_path.read_text().splitlines(keepends=True)[-40:]), file=sys.stderr)
        return rc
    _record_timings(profile, log_path)
    return 0


def _settle_finished_points() -> None:
    """A sweep point whose ``point.json`` exists is complete (its folder is renamed into place
    whole). A run killed after that rename but before Snakemake noticed leaves the point marked
    incomplete, and ``--rerun-incomplete`` would run it again: clear those marks."""
    marks = root() / ".snakemake" / "incomplete"
    if not marks.is_dir() or not any(marks.iterdir()):
        return
    done = [p.relative_to(root()).as_posix() for p in (root() / "results" / "sweeps").glob("*/points/*/point.json")]
    if done:
        subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(snakefile()), "--directory", str(root()),
                        "--cleanup-metadata", *done], cwd=root(), capture_output=True)


def _clear_stale_lock(cmd: list[str]) -> None:
    """A run that was killed leaves Snakemake's lock behind; remove it when no Snakemake process
    works in this directory any more (a live one keeps its lock, and Snakemake then says so)."""
    locks = root() / ".snakemake" / "locks"
    if not locks.is_dir() or not any(locks.iterdir()):
        return
    me = os.getpid()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if int(proc.name) == me:
                continue
            args = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(proc / "cwd")
        except (OSError, ValueError):
            continue
        if b"snakemake" in b" ".join(args) and Path(cwd) == root() and b"--summary" not in args:
            return
    print("workflow: removing the lock a killed run left behind", file=sys.stderr)
    subprocess.run(_with(cmd, "--unlock"), cwd=root(), capture_output=True)


_LOG_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")


def job_seconds(snakemake_log: str) -> dict[str, float]:
    """Seconds each job of a Snakemake log ran, from its own start and finish stamps, by job name
    (:func:`job_name` of its first output).

    >>> job_seconds("[Tue Dec  1 13:34:54 2026]\\nlocalrule features:\\n    output: build/x.done\\n    jobid: 7\\n"
    ...             "[Tue Dec  1 13:35:42 2026]\\nFinished jobid: 7 (Rule: features)\\n")
    {'build/x.done': 48.0}
    """
    from datetime import datetime

    stamp, started, outputs, seconds = None, {}, {}, {}
    current_output = None
    for line in snakemake_log.splitlines():
        m = _LOG_STAMP.match(line.strip())
        if m:
            stamp = datetime.strptime(" ".join(m.group(1).split()), "%a %b %d %H:%M:%S %Y")
            continue
        line = line.strip()
        if line.startswith("output: "):
            current_output = line[len("output: "):].split(", ")[0]
        elif line.startswith("jobid: ") and current_output and stamp:
            jid = line.split()[1]
            started[jid], outputs[jid], current_output = stamp, current_output, None
        elif line.startswith("Finished jobid: ") and stamp:
            jid = line.split()[2]
            if jid in started:
                seconds[job_name(outputs[jid])] = (stamp - started[jid]).total_seconds()
    return seconds


def _record_timings(profile: str, log_path: Path) -> None:
    """Remember how long each job took (from Snakemake's log) for the next run's time-left estimate."""
    path = _timings_files(profile)[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    known = json.loads(path.read_text()) if path.exists() else {}
    known |= {k: round(v, 1) for k, v in job_seconds(log_path.read_text()).items() if not k.startswith("point ")}
    path.write_text(json.dumps(known, indent=2, sort_keys=True) + "\n")
