"""Install the locked environment into a virtual environment (``make venv``), with uv when it can.

Usage: python workflow/install_env.py VENV LOCK [--editable PATH]

Every package of the lock file (``requirements.lock``: the exact versions ``make test`` passed
with, ``make lock`` rewrites it) goes into VENV, then the project itself, editable and without its
dependencies. The installer is uv (from PyPI, pinned below): it unpacks wheels in parallel, about
20 s here instead of pip's 2 minutes for the same 253 packages. uv is given the package sources
pip is configured with (``pip config list``: find-links, index and extra index URLs, constraints;
local wheel stores and mirrors included) and pip's rule for several sources (the best version
from any of them), so both installers pick the same files. Where uv cannot be installed, pip
installs the same lock. Modules are byte-compiled at install (uv: in parallel, 16 s for 18,417
files): these machines set PYTHONDONTWRITEBYTECODE=1, so otherwise every process compiles every
module it imports, every time (importing torch, timm, pandas, matplotlib, scikit-learn, scipy,
onnxruntime and IPython: 14.8 s uncompiled, 6.8 s compiled; the book runs about 25 processes).
Two packages are left out (:data:`LEFT_OUT`), after either installer: ``rfc3987-syntax`` and the
``lark`` it needs, which jupyter-events pulls in through ``jsonschema[format-nongpl]`` as the
checker of the ``iri`` string format. Importing it compiles 35 Earley grammars, 2.8 s of CPU, and
jsonschema imports it eagerly, so every process that imports nbformat paid it (each chapter job,
each book build, each pytest worker). No schema this project validates uses that format; without
the package jsonschema does not check it, as it does for every format whose checker is missing.
Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

UV_VERSION = "0.13.9"
#: pip configuration keys and the uv option that takes each value
_SOURCES = {"find-links": "--find-links", "extra-index-url": "--extra-index-url", "index-url": "--default-index",
            "constraint": "--constraint"}
#: packages removed after the install, and why (the module's docstring): ``make lock`` leaves them
#: out of the lock file too
LEFT_OUT = ("rfc3987-syntax", "lark")
#: pip's warning for each unused local index folder, repeated per package: not shown
_NOISE = "is ignored: it is neither a file nor a directory"


def pip_sources(pip_config_list: str) -> list[str]:
    """uv options for the sources in ``pip config list`` output (lines ``scope.key='value'``; a
    value may hold several, separated by white space). Later scopes do not repeat a value.

    >>> pip_sources("global.find-links='/opt/wheels'\\n:env:.find-links='/opt/wheels'\\n"
    ...             "global.extra-index-url='file:///a/simple file:///b/simple'\\nglobal.cert='x.crt'")
    ['--find-links', '/opt/wheels', '--extra-index-url', 'file:///a/simple', '--extra-index-url', 'file:///b/simple']
    """
    args: list[str] = []
    seen: set[tuple[str, str]] = set()
    for line in pip_config_list.splitlines():
        m = re.match(r"^[^.]*\.([a-z-]+)=(.*)$", line.strip())
        if not m or m.group(1) not in _SOURCES:
            continue
        option = _SOURCES[m.group(1)]
        for value in m.group(2).strip().strip("'\"").split():
            if (option, value) not in seen:
                seen.add((option, value))
                args += [option, value]
    return args


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    shown = "\n".join(line for line in proc.stdout.splitlines() if _NOISE not in line)
    if proc.returncode:
        sys.exit(f"{shlex.join(cmd[:4])} ... failed (exit {proc.returncode}):\n{shown[-4000:]}")


def leave_out(venv: Path) -> None:
    """Uninstall :data:`LEFT_OUT` from ``venv`` where installed (pip, quietly; a no-op otherwise)."""
    python = str(venv / "bin" / "python")
    _run([python, "-m", "pip", "--disable-pip-version-check", "uninstall", "-y", "-q", *LEFT_OUT])


def install(venv: Path, lock: Path, editable: Path | None) -> str:
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "--disable-pip-version-check"]
    got_uv = subprocess.run(pip + ["install", "-q", f"uv=={UV_VERSION}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL).returncode == 0
    if got_uv:
        config = subprocess.run(pip + ["config", "list"], capture_output=True, text=True).stdout
        uv = [str(venv / "bin" / "uv"), "pip", "install", "--python", python, "--quiet", "--compile-bytecode",
              "--index-strategy", "unsafe-best-match", *pip_sources(config)]
        _run(uv + ["-r", str(lock)])
        leave_out(venv)
        if editable:
            _run(uv + ["--no-deps", "-e", str(editable)])
        return f"uv {UV_VERSION}"
    _run(pip + ["install", "-q", "-r", str(lock)])
    leave_out(venv)
    if editable:
        _run(pip + ["install", "-q", "--no-deps", "-e", str(editable)])
    return "pip (uv could not be installed)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("venv", type=Path)
    parser.add_argument("lock", type=Path, nargs="?", help="the lock file (omitted with --leave-out-only)")
    parser.add_argument("--editable", type=Path, default=None)
    parser.add_argument("--leave-out-only", action="store_true", help="only uninstall LEFT_OUT (make lock)")
    args = parser.parse_args()
    if args.leave_out_only:
        leave_out(args.venv)
        return
    if args.lock is None:
        parser.error("a lock file is needed")
    start = time.perf_counter()
    packages = sum(1 for line in args.lock.read_text().splitlines() if line.strip() and not line.startswith("#"))
    installer = install(args.venv, args.lock, args.editable)
    print(f"environment: {packages} locked packages installed by {installer} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
