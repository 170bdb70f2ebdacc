"""Where the project keeps its caches and outputs.

Everything large (downloaded packages, extracted volumes, the default dataset, converted
weights) lives under ``data/`` in the project root, which git ignores. Set ``CBIR_HOME`` to
put that tree somewhere else.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def project_root() -> Path:
    """The project folder: ``$CBIR_HOME`` if set, else the checkout that holds this package."""
    env = os.environ.get("CBIR_HOME")
    if env:
        return Path(env).expanduser().resolve()
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").exists():
        return here
    return Path.cwd().resolve()


def data_dir() -> Path:
    """``<root>/data``: every git-ignored, rebuildable artefact."""
    return project_root() / "data"


def cache_dir() -> Path:
    """``<root>/data/cache``: downloaded packages, extracted source files, converted weights."""
    return data_dir() / "cache"


def default_dataset_dir() -> Path:
    """``<root>/data/default``: the embedded default dataset (PNGs + manifest.csv)."""
    return data_dir() / "default"


def results_dir() -> Path:
    """``<root>/results``: tidy CSVs and provenance JSON written by the notebooks."""
    return project_root() / "results"


def portable(path: str | Path) -> str:
    """``path`` relative to the project root when it lies inside it (``data/cache/...``), else as
    given: what provenance records, so that it names no machine's folders."""
    p = Path(path)
    try:
        return p.resolve().relative_to(project_root()).as_posix()
    except ValueError:
        return str(path)


def scratch_dir(prefix: str) -> tempfile.TemporaryDirectory:
    """A private temporary folder (``.name``) that is deleted when the returned object is garbage
    collected or the interpreter exits; keep the object as long as the folder is in use.

    The folders live in ``<tmp>/cbirlib-scratch/`` under names that start with the owning
    process id: a process that is killed (a notebook kernel stopped by SIGKILL) cannot delete its
    folder, so every new one first removes the folders of processes that no longer exist."""
    root = Path(tempfile.gettempdir()) / "cbirlib-scratch"
    root.mkdir(exist_ok=True)
    for folder in root.iterdir():
        pid = folder.name.split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
    return tempfile.TemporaryDirectory(prefix=f"{os.getpid()}.{prefix}", dir=root)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
