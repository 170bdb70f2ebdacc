"""The environment files agree: every direct pin is in the lock, and the installer reads pip's sources."""

import importlib.util
import re

from cbirlib import paths

ROOT = paths.project_root()


def _pins(path) -> dict[str, str]:
    pins = {}
    for line in (ROOT / path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==(\S+)", line).groups()
            pins[re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()] = version
    return pins


def _install_env():
    """workflow/install_env.py as a module (it is a script, outside the package)."""
    spec = importlib.util.spec_from_file_location("install_env", ROOT / "workflow" / "install_env.py")
    install_env = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(install_env)
    return install_env


def test_every_direct_pin_is_in_the_lock_at_the_same_version():
    direct, locked = _pins("requirements.txt"), _pins("requirements.lock")
    assert direct and len(locked) > len(direct)
    assert {n: v for n, v in direct.items() if locked.get(n) != v} == {}


def test_the_installer_passes_pip_s_sources_to_uv():
    install_env = _install_env()
    config = ("global.find-links='/w'\n:env:.find-links='/w'\nglobal.index-url='https://mirror/simple'\n"
              "global.extra-index-url='file:///a file:///b'\nglobal.constraint='/c.txt'\nglobal.cert='/x.crt'\n")
    assert install_env.pip_sources(config) == [
        "--find-links", "/w", "--default-index", "https://mirror/simple", "--extra-index-url", "file:///a",
        "--extra-index-url", "file:///b", "--constraint", "/c.txt"]
    assert install_env.pip_sources("") == []


def test_the_slow_optional_iri_checker_is_left_out():
    """jsonschema imports rfc3987-syntax eagerly when it is installed (2.8 s of grammar compiling in
    every process that imports nbformat): the installer removes it, the lock does not list it."""
    import subprocess
    import sys

    install_env = _install_env()
    assert not set(install_env.LEFT_OUT) & set(_pins("requirements.lock"))
    loaded = subprocess.run([sys.executable, "-c", "import sys, nbformat, jsonschema; "
                             "print(sorted(m for m in sys.modules if m.startswith(('rfc3987', 'lark'))))"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


def test_the_test_scheduler_names_tests_that_exist():
    """The tests conftest.py starts first are still there (a renamed one would silently lose its place)."""
    import conftest

    for test in conftest.LONG + tuple(f"{conftest.RERUN}::{name}" for name in conftest.RERUN_FIRST):
        path, name = test.split("::")
        assert f"def {name}(" in (ROOT / path).read_text(), test
    assert conftest.start_rank(conftest.NOTEBOOK_GROUP) < conftest.start_rank(conftest.LONG[0]) \
        < conftest.start_rank("tests/test_cipher.py::test_round_trip")
