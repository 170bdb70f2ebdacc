"""Rerunning with new parameters works as documented: every `make run` command of README.md and the
book's rerun page, `make book DATA=<folder>`, and going back to the default book, byte for byte.

All at the ci profile, in a copy of the project (tracked files; .venv and data/ shared read-only by
symlink), so the checkout's book and results are never touched. The copy builds its default book
once per test run; each worker of a parallel run (pytest-xdist) works in a clone of it, and each
`make run` makes its own variant book under build/variants/.
"""

import hashlib
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "README.md", ROOT / "book" / "rerun.md")
#: prerequisites the copy shares with the checkout: make must never rebuild them there
SHARED = (".venv/.installed", "data/cache/.assets", "data/cache/.weights", "data/default/manifest.csv",
          "data/checkset/manifest.csv")

pytestmark = pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "python").exists(), reason="needs the project's .venv")


#: the folder placeholders of the docs, all standing for the test's folder of images
FOLDER_PLACEHOLDERS = ("/path/to/your/folder", "/path/to/folder")


def documented_runs() -> list[str]:
    """Every `make run ...` line of the docs (the generic `NB=<notebook>` one aside), as written;
    lines that differ only in the placeholder of a folder are one run (the same command)."""
    out = {}
    for doc in DOCS:
        for line in doc.read_text().splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("make run ") and "<" not in line:
                same = line
                for placeholder in FOLDER_PLACEHOLDERS:
                    same = same.replace(placeholder, FOLDER_PLACEHOLDERS[0])
                out.setdefault(same, line)
    return list(out.values())


@pytest.fixture(scope="session")
def built_project(tmp_path_factory, worker_id):
    """The copy of the project with its default ci book and the folder of images, built once per
    test run: side by side (pytest-xdist) the first worker that needs it builds it under a lock in
    the run's common temporary folder, the others wait for it. Tests never touch it: each worker
    works in a clone of its own (:func:`project`)."""
    from filelock import FileLock

    common = tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent
    copy, folder = common / "rerun-project", common / "rerun-project" / "my-images"
    with FileLock(str(common / "rerun-project.lock")):
        if (copy / ".built").exists():
            return copy, folder
        shutil.rmtree(copy, ignore_errors=True)
        copy.mkdir()
        files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
        for rel in (f.decode() for f in files if f):
            dst = copy / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if (ROOT / rel).is_file():
                dst.write_bytes((ROOT / rel).read_bytes())
                st = (ROOT / rel).stat()  # the checkout's times: the shared prerequisites stay up to date
                os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
        for name in (".venv", "data"):
            (copy / name).symlink_to(ROOT / name)
        rng = np.random.default_rng(0)
        for k, cls in enumerate(("alpha", "beta", "gamma")):
            (folder / cls).mkdir(parents=True)
            for i in range(24):
                img = np.clip(rng.normal(60 + 70 * k, 30, (64, 64)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(folder / cls / f"{i:02d}.png")
        proc = make(copy, "book", "PROFILE=ci", "CORES=2")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        (copy / ".built").touch()
    return copy, folder


@pytest.fixture(scope="module")
def project(built_project, tmp_path_factory):
    """This worker's clone of the built project (files, times and the Snakemake state copied,
    ``.venv`` and ``data`` still linked to the checkout), so that tests on several workers never
    share a Snakemake lock or a variant folder."""
    built, folder = built_project
    clone = tmp_path_factory.mktemp("project") / "copy"
    shutil.copytree(built, clone, symlinks=True, copy_function=shutil.copy2)
    return clone, clone / folder.relative_to(built)


def shared_stamps() -> dict[str, int]:
    """mtime (ns) of every shared prerequisite, the venv's editable-install finder and its kernel spec."""
    finder = next((ROOT / ".venv" / "lib").glob("python*/site-packages/__editable___cbirlib_*_finder.py"), None)
    kernel = ROOT / ".venv" / "share" / "jupyter" / "kernels" / "python3" / "kernel.json"
    stamps = [ROOT / f for f in SHARED] + ([finder] if finder else []) + [kernel]
    return {str(p.relative_to(ROOT)): p.stat().st_mtime_ns for p in stamps if p.exists()}


def make(copy: Path, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    """make in the copy. `-o` keeps the top make off the shared prerequisites, the copied mtimes keep
    sub-makes off them (make does not pass `-o` on); checked after every call: a copy that
    reinstalled cbirlib would point the checkout's venv at the copy's sources."""
    keep = [a for f in SHARED for a in ("-o", f)]
    env = os.environ | {"CBIR_HOME": str(copy)}
    before = shared_stamps()
    proc = subprocess.run(["make", "--no-print-directory", *keep, *args], cwd=copy, capture_output=True, text=True,
                          env=env, timeout=timeout)
    assert shared_stamps() == before, f"make {' '.join(args)} in the copy rebuilt a shared prerequisite"
    return proc


def book_hashes(html: Path) -> dict[str, str]:
    return {p.relative_to(html).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(html.rglob("*")) if p.is_file() and p.suffix in (".html", ".png", ".csv")}


def run_line(copy: Path, line: str, folder: Path) -> subprocess.CompletedProcess:
    for placeholder in FOLDER_PLACEHOLDERS:
        line = line.replace(placeholder, str(folder))
    args = [a for a in shlex.split(line)[1:] if not a.startswith("PROFILE=")]
    return make(copy, *args, "PROFILE=ci", "CORES=2")


def test_the_docs_have_the_readme_examples():
    runs = documented_runs()
    assert any("NB=01_encryption" in r and "block_size 16" in r for r in runs)
    assert any(re.search(r'models_to_run .*\bvit\b', r) for r in runs)
    assert any("NB=00_data" in r and "-p data" in r for r in runs)


@pytest.mark.parametrize("line", documented_runs())
def test_every_documented_make_run_builds_its_book(project, line):
    copy, folder = project
    default_html = copy / "book" / "_build" / "html"
    before = book_hashes(default_html)
    proc = run_line(copy, line, folder)
    if "weights torchvision" in line:  # offline, torchvision's checkpoints are not in the torch cache
        assert proc.returncode != 0 and "torch cache" in proc.stdout + proc.stderr
        return
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    if "PARAMS" not in line:  # no parameter changed: the copy's default (ci) chapter is current and taken as it is
        assert "runs with the default book's parameters" in proc.stderr
    index = re.search(r"book: (\S+index\.html)", proc.stdout + proc.stderr)
    assert index and Path(index.group(1)).exists()
    nb = re.search(r"NB=(\w+)", line).group(1)
    page = (Path(index.group(1)).parent / "executed" / f"{nb}.html").read_text()
    assert "ran with" in page and "non-default parameters" in page
    from cbirlib.reporting import book

    assert book.check_site(Path(index.group(1)).parent) == []
    assert book_hashes(default_html) == before, "a rerun never touches the default book"


def _coalesced(outputs: list[dict]) -> list[dict]:
    """Consecutive stream outputs of one stream merged into one, as nbval merges them: a kernel may
    flush a printed line in two pieces (the text, then its newline) when it runs under load."""
    merged: list[dict] = []
    for out in outputs:
        if (out.get("output_type") == "stream" and merged and merged[-1].get("output_type") == "stream"
                and merged[-1].get("name") == out.get("name")):
            text = merged[-1]["text"]
            merged[-1] = {**merged[-1], "text": ("".join(text) if isinstance(text, list) else text)
                          + ("".join(out["text"]) if isinstance(out["text"], list) else out["text"])}
        else:
            merged.append(out)
    return merged


def _shown(nb: Path) -> dict[str, list[str]]:
    """What each cell of an executed notebook shows as text (tables, prose, printed lines), sanitised
    as nbval sanitises; cells whose output nbval ignores (timings) and the injected cell left out."""
    import configparser
    import json

    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "tests" / "nbval_sanitize.cfg")
    rules = [(re.compile(cfg[s]["regex"]), cfg[s]["replace"]) for s in cfg.sections()]
    shown = {}
    for cell in json.loads(nb.read_text())["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if cell["cell_type"] != "code" or "nbval-ignore-output" in tags or "injected-parameters" in tags:
            continue
        texts = []
        for out in _coalesced(cell.get("outputs", [])):
            data = out.get("data", {})
            for text in [out.get("text", "")] + [data.get(m, "") for m in ("text/plain", "text/html", "text/markdown")]:
                text = "".join(text) if isinstance(text, list) else text
                for rx, rep in rules:
                    text = rx.sub(rep, text)
                texts.append(text)
        shown[cell["id"]] = texts
    return shown


def test_a_line_flushed_in_two_pieces_reads_as_one():
    split = [{"output_type": "stream", "name": "stdout", "text": ["72 test images"]},
             {"output_type": "stream", "name": "stdout", "text": "\n"},
             {"output_type": "stream", "name": "stderr", "text": "x"}]
    assert [o["text"] for o in _coalesced(split)] == ["72 test images\n", "x"]
    assert split[0]["text"] == ["72 test images"], "the notebook's outputs are not changed"


def test_the_parallel_book_shows_what_the_serial_references_show(project):
    """The chapters executed by the workflow, side by side on two cores, show the same tables,
    numbers and lines as the committed reference notebooks, executed one after another at the same
    profile (make refresh)."""
    copy, _ = project
    for ref in sorted((ROOT / "notebooks").glob("*.ipynb")):
        parallel = _shown(copy / "book" / "executed" / ref.name)
        serial = _shown(ref)
        assert parallel.keys() == serial.keys(), ref.name
        for cell_id in serial:
            assert parallel[cell_id] == serial[cell_id], f"{ref.name} cell {cell_id}"


def test_a_wrong_parameter_is_a_clear_error_before_any_work(project):
    copy, _ = project
    for params, expected in (("-p colour red", "has no parameter 'colour'"),
                             ("-p block_size sixteen", "parameter 'block_size' of 01_encryption expects an integer")):
        proc = make(copy, "run", "NB=01_encryption", f"PARAMS={params}", "PROFILE=ci")
        assert proc.returncode != 0 and expected in proc.stderr, proc.stderr[-2000:]


def test_make_book_on_a_folder_and_back_to_the_defaults(project):
    copy, folder = project
    default_html = copy / "book" / "_build" / "html"
    before = book_hashes(default_html)
    proc = make(copy, "book", f"DATA={folder}", "PROFILE=ci", "CORES=2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    index = Path(re.search(r"book: (\S+index\.html)", proc.stdout + proc.stderr).group(1))
    html = index.parent
    for nb in ("00_data", "02_classification", "99_scorecard"):
        page = (html / "executed" / f"{nb}.html").read_text()
        assert "my-images" in page, nb
    assert "12 people" not in (html / "executed" / "99_scorecard.html").read_text()
    assert not list((copy / "results").rglob("*my-images*"))
    back = make(copy, "book", "PROFILE=ci")
    assert back.returncode == 0
    assert book_hashes(default_html) == before, "the default book is byte for byte what it was"


def test_paper_run_without_a_gpu_says_so(project):
    copy, _ = project
    proc = make(copy, "paper-run")
    assert proc.returncode != 0 and "needs a CUDA GPU" in proc.stdout + proc.stderr
