"""Books of non-default runs (``make run``, ``make book DATA=<folder>``): each in its own folder
under ``build/variants/``, so the default book and the committed ``results/`` are never touched."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .bookjobs import WorkflowError, chapters, root, run_chapter
from .driver import run

#: the files of book/ a variant book is built from (its executed chapters are its own)
BOOK_SOURCES = ("*.md", "*.yml", "_vendor", "_css", "_generated")


@dataclass(frozen=True)
class Variant:
    """A book of a non-default run (other data, or a chapter with other parameters): its own
    executed chapters, results and HTML under ``build/variants/<name>/``, so the default book and
    the committed ``results/`` are never touched."""

    name: str
    profile: str = "cpu"
    data: str = "default"

    @property
    def folder(self) -> Path:
        return root() / "build" / "variants" / self.name

    @property
    def executed(self) -> Path:
        return self.folder / "book" / "executed"

    @property
    def results(self) -> Path:
        return self.folder / "results"

    @property
    def html(self) -> Path:
        return self.folder / "book" / "_build" / "html"

    def config(self) -> dict:
        return {"profile": self.profile, "data": self.data, "results_dir": str(self.results),
                "executed_dir": str(self.executed.relative_to(root()))}


def variant_name(nb: str | None, params: dict, data: str = "default") -> str:
    """A readable, stable folder name for a run: the data folder's name and/or the chapter and its
    parameters, with a short hash of all of them."""
    import hashlib

    digest = hashlib.sha256(json.dumps({"nb": nb, "params": params, "data": data}, sort_keys=True,
                                       default=str).encode()).hexdigest()[:8]
    parts = ([f"data-{Path(data).name}"] if data != "default" else []) + ([nb] if nb else [])
    return "-".join(parts + [digest])


def _profile_of(executed: Path) -> str | None:
    try:
        return json.loads(executed.read_text())["metadata"]["papermill"]["parameters"].get("profile")
    except (OSError, ValueError, KeyError):
        return None


def seed_variant(variant: Variant) -> list[str]:
    """Copy the default book's executed chapters and committed results into a variant of the same
    profile and data (mtimes kept, so only what the variant changes reruns). Returns the chapters seeded."""
    import shutil

    if variant.data != "default":
        return []
    seeded = []
    variant.executed.mkdir(parents=True, exist_ok=True)
    for nb in chapters():
        src = root() / "book" / "executed" / f"{nb}.ipynb"
        dst = variant.executed / f"{nb}.ipynb"
        if src.exists() and not dst.exists() and _profile_of(src) == variant.profile:
            shutil.copy2(src, dst)
            seeded.append(nb)
            res = root() / "results" / nb
            if res.is_dir() and not (variant.results / nb).exists():
                shutil.copytree(res, variant.results / nb, copy_function=shutil.copy2)
    return seeded


def build_variant_book(variant: Variant) -> Path:
    """The variant's HTML book (Jupyter Book, ``-W -n``) from book/'s sources and its own chapters."""
    import shutil

    book_dir = variant.folder / "book"
    for pattern in BOOK_SOURCES:
        for src in (root() / "book").glob(pattern):
            dst = book_dir / src.name
            if src.is_dir():
                shutil.rmtree(dst, ignore_errors=True)
                shutil.copytree(src, dst)
            else:
                shutil.copy2(src, dst)
    from ..reporting import book, scorecard

    card = variant.results / "99_scorecard" / "scorecard.csv"
    if card.exists():  # the intro's short version from this variant's own scorecard
        import pandas as pd

        (book_dir / "_generated" / "headlines.md").write_text(scorecard.headlines_markdown(pd.read_csv(card)))
    for nb in book_dir.glob("executed/*.ipynb"):
        book.hide_injected_parameters(nb)
    log = variant.folder / "build.log"
    with open(log, "w") as f:
        rc = subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build", "-W", "-n", "--keep-going",
                             str(book_dir)], stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise WorkflowError(f"the variant book did not build; see {log}:\n" + log.read_text()[-3000:])
    return variant.html / "index.html"


def run_notebook_variant(nb: str, params: dict, profile: str, data: str = "default", cores: int | None = None,
                         name: str | None = None) -> Path:
    """``make run``: check ``params`` (before any work), execute chapter ``nb`` with them into a
    variant book, rerun what reads its tables, build that book. Returns its index.html. Without
    parameters, at the default book's profile, the default book's chapter is taken as it is (the
    workflow re-executes it only when it is out of date)."""
    from ..studies import parameters as cbparams

    values = cbparams.coerce(nb, dict(params) | {"profile": profile} | ({"data": data} if data != "default" else {}))
    cbparams.check_available(nb, values)
    values.pop("profile")
    variant = Variant(name or variant_name(nb, values, data), profile, data)
    seeded = seed_variant(variant)
    out = variant.executed / f"{nb}.ipynb"
    print(f"workflow: {nb} with {cbparams.describe(nb, values | {'profile': profile})} -> {out.relative_to(root())}",
          file=sys.stderr)
    if nb in seeded and not values:
        # no parameter differs from the default book's chapter at this profile: it is the chapter; the
        # workflow below re-executes it only if it is out of date (code or data newer than it)
        print(f"workflow: {nb} runs with the default book's parameters at profile {profile}: its executed chapter "
              "is taken, and re-executed below only if out of date", file=sys.stderr)
    else:
        run_chapter(nb, out, profile, data, str(variant.results), {k: v for k, v in values.items() if k != "data"})
    rc = run(["notebooks"], cores, variant.config())
    if rc != 0:
        raise WorkflowError(f"the chapters of {variant.name} did not run (exit {rc})")
    return build_variant_book(variant)


def run_data_variant(data: str, profile: str, cores: int | None = None) -> Path:
    """``make book DATA=<folder>``: every chapter on the folder, into its own variant book."""
    from ..datasets import data as cbir_data

    cbir_data.open_dataset(data)  # a clear error for a missing or malformed folder, before any work
    variant = Variant(variant_name(None, {}, str(Path(data).resolve())), profile, str(Path(data).resolve()))
    rc = run(["notebooks"], cores, variant.config())
    if rc != 0:
        raise WorkflowError(f"the chapters on {data} did not run (exit {rc})")
    return build_variant_book(variant)
