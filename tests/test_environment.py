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


def test_every_direct_pin_is_in_the_lock_at_the_same_version():
    direct, locked = _pins("requirements.txt"), _pins("requirements.lock")
    assert direct and len(locked) > len(direct)
    assert {n: v for n, v in direct.items() if locked.get(n) != v} == {}


def test_the_installer_passes_pip_s_sources_to_uv():
    spec = importlib.util.spec_from_file_location("install_env", ROOT / "workflow" / "install_env.py")
    install_env = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(install_env)
    config = ("global.find-links='/w'\n:env:.find-links='/w'\nglobal.index-url='https://mirror/simple'\n"
              "global.extra-index-url='file:///a file:///b'\nglobal.constraint='/c.txt'\nglobal.cert='/x.crt'\n")
    assert install_env.pip_sources(config) == [
        "--find-links", "/w", "--default-index", "https://mirror/simple", "--extra-index-url", "file:///a",
        "--extra-index-url", "file:///b", "--constraint", "/c.txt"]
    assert install_env.pip_sources("") == []
