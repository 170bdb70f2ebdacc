"""The package's plan, checked: every module of ``cbirlib`` sits in one layer, imports only from
the layers it may (README, "Layout"), and uses no other module's private names. Static (reads
the source with ``ast``, function-level imports included); only the last two tests import the
modules, to check that every import and every ``python -m`` command names what exists."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cbirlib"

#: layer -> its modules. A new module must be placed here (the first test says so).
LAYERS = {
    "base": {"paths", "provenance", "results", "runtime", "paper", "profiles", "stats"},
    "core": {"keys", "keyexpansion", "_keyexpansion_kernels", "schedule", "cipher", "cipher16", "imagemetrics", "keyspace",
             "attacks", "knownplaintext"},
    "datasets": {"assets", "volumes", "radiographs", "splits", "defaultdata", "data"},
    "learning": {"weightsources", "models", "features", "experimentconfig", "fitting", "train", "evaluate", "indexes",
                 "retrievalmetrics", "quantize", "keyaware"},
    "protocol": {"retrieval", "imagefiles", "imagereaders", "vectorindex", "service", "httpserver", "httpclient"},
    "reporting": {"scorecard", "claims", "verdicts", "plots", "securityplots", "sweeptables", "book", "regimetables",
                  "regimeplots", "regimeclaims", "layoutcheck"},
    "studies": {"chapters", "cipherstudy", "classificationstudy", "classificationpoints", "retrievalstudy", "keyawarestudy", "quantstudy",
                "securitystudy", "attacksweep", "parameters"},
    "entry": {"cli", "device", "bookjobs", "variants", "sweeps", "driver", "commands"},
}
#: layer -> the layers it may import from (besides itself)
MAY_IMPORT = {
    "base": set(),
    "core": {"base"},
    "datasets": {"base"},
    "learning": {"base", "core", "datasets"},
    "protocol": {"base", "core", "learning"},
    "reporting": {"base", "datasets"},
    "studies": {"base", "core", "datasets", "learning", "protocol", "reporting"},
    "entry": set(LAYERS) - {"entry"},
}
LAYER_OF = {m: layer for layer, mods in LAYERS.items() for m in mods}

#: layer -> its sub-package of ``cbirlib``; the base modules and the command-line entry points
#: (:data:`TOP_LEVEL`) are modules of ``cbirlib`` itself
FOLDERS = {"core": "core", "datasets": "datasets", "learning": "learning", "protocol": "protocol",
           "reporting": "reporting", "studies": "studies", "entry": "workflow"}
TOP_LEVEL = LAYERS["base"] | {"cli", "device"}


def _files() -> dict[str, Path]:
    """module name (unique across the package) -> its file"""
    found = [p for p in PACKAGE.rglob("*.py") if not p.stem.startswith("__") and "__pycache__" not in p.parts]
    files = {p.stem: p for p in found}
    assert len(files) == len(found), "module names must be unique"
    return files


def _modules() -> list[str]:
    return sorted(_files())


def _tree(module: str) -> ast.Module:
    return ast.parse(_files()[module].read_text())


def imports_of(tree: ast.Module) -> set[str]:
    """cbirlib modules a module imports (relative or absolute, at any depth of the code): every
    part of ``from <a.b> import <c, d>`` that names a module."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("cbirlib")):
            found.update((node.module or "").split("."))
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(part for a in node.names if a.name.startswith("cbirlib.") for part in a.name.split("."))
    return found & set(LAYER_OF)


def test_every_module_has_a_layer():
    assert set(_modules()) == set(LAYER_OF), (
        f"place new modules in LAYERS: {sorted(set(_modules()) - set(LAYER_OF))}; "
        f"gone: {sorted(set(LAYER_OF) - set(_modules()))}")


def test_every_module_sits_in_its_layers_folder():
    for module, path in _files().items():
        where = path.parent.relative_to(PACKAGE).as_posix()
        expected = "." if module in TOP_LEVEL else FOLDERS[LAYER_OF[module]]
        assert where == expected, f"{module} ({LAYER_OF[module]}) is in cbirlib/{where}, not cbirlib/{expected}"


def test_every_folder_is_a_layer_with_a_docstring():
    for folder in (p for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"):
        assert folder.name in FOLDERS.values(), folder.name
        assert ast.get_docstring(ast.parse((folder / "__init__.py").read_text())), folder.name


@pytest.mark.parametrize("module", _modules())
def test_imports_follow_the_layers(module):
    layer = LAYER_OF[module]
    allowed = MAY_IMPORT[layer] | {layer}
    wrong = {m: LAYER_OF[m] for m in imports_of(_tree(module)) if LAYER_OF[m] not in allowed}
    assert not wrong, f"{module} ({layer}) may not import {wrong}"


def test_core_and_scorecard_never_import_a_study():
    for module in LAYERS["core"] | {"scorecard", "claims", "verdicts"}:
        assert not imports_of(_tree(module)) & LAYERS["studies"], module


def test_no_private_name_is_used_across_modules():
    mods = set(_modules())
    uses = []
    for module in mods:
        for node in ast.walk(_tree(module)):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in mods
                    and node.value.id != module and node.attr.startswith("_") and not node.attr.startswith("__")):
                uses.append(f"{module}: {node.value.id}.{node.attr}")
            if isinstance(node, ast.ImportFrom) and node.level and (node.module or "").split(".")[-1] in mods:
                uses += [f"{module}: from .{node.module} import {a.name}" for a in node.names
                         if a.name.startswith("_") and not a.name.startswith("__")]
    assert uses == [], uses


def test_the_checker_sees_a_forbidden_import():
    """The rule test can fail: an upward import in a core module is caught."""
    tree = ast.parse("def f():\n    from .studies import securitystudy\n    from cbirlib.learning.train import Domain\n")
    assert imports_of(tree) == {"securitystudy", "train"}
    assert {LAYER_OF[m] for m in imports_of(tree)} - MAY_IMPORT["core"] - {"core"} == {"studies", "learning"}


def _relative_target(path: Path, node: ast.ImportFrom) -> str:
    package = ".".join(("cbirlib",) + path.parent.relative_to(PACKAGE).parts)
    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def test_every_import_of_the_package_names_what_exists():
    """Each ``from <module> import <names>`` inside cbirlib, at any depth of the code (a function's
    imports run only when it is called), names a module that exists and names it has. This test
    imports the modules."""
    import importlib

    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("cbirlib"))):
                continue
            target = _relative_target(path, node) if node.level else node.module
            try:
                module = importlib.import_module(target)
            except ImportError:
                missing.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {target}")
                continue
            for alias in node.names:
                if not hasattr(module, alias.name) and importlib.util.find_spec(f"{target}.{alias.name}") is None:
                    missing.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {target}.{alias.name}")
    assert missing == []


def test_every_module_a_command_runs_exists():
    """``python -m cbirlib.<...>`` in the Makefile, the workflow, the device script and the docs."""
    import importlib.util
    import re

    root = PACKAGE.parent
    texts = [root / "Makefile", root / "README.md", root / "workflow" / "Snakefile", *root.glob("workflow/device/*"),
             *root.glob("book/*.md"), *PACKAGE.rglob("*.py")]
    named = {m for t in texts for m in re.findall(r"-m (cbirlib(?:\.\w+)*)", t.read_text())}
    assert named and [m for m in sorted(named) if importlib.util.find_spec(m) is None] == []
