"""A notebook's parameters, checked in one place before any work starts.

Every notebook declares its parameters in the cell tagged ``parameters`` (papermill). From the
command line they arrive as strings (``-p domains '["plain", 8]'``); :func:`coerce` turns each
into the type its default (or, for a default of None, the profile's value) has — YAML for lists,
mappings, booleans and numbers — and refuses an unknown name or a value of the wrong type with a
message that names the parameter and what it expects. :func:`apply` does the same inside a
running notebook (on its own globals; :func:`cbirlib.studies.chapters.configure` calls it) and
:func:`describe` gives the line each chapter prints near its top: which data, profile and
non-default parameters it ran with.

>>> coerce("01_encryption", {"block_size": "16"})["block_size"]
16
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import yaml

from .. import paths, profiles


class ParameterError(ValueError):
    """An unknown parameter, or a value the parameter cannot take; the message says which."""


def notebook_path(notebook: str) -> Path:
    path = paths.project_root() / "notebooks" / f"{notebook}.ipynb"
    if not path.exists():
        raise ParameterError(f"no notebook {notebook!r} (notebooks/{notebook}.ipynb)")
    return path


@functools.lru_cache(maxsize=32)
def _declared(path: str, _mtime: int) -> dict[str, object]:
    import papermill as pm

    out = {}
    for name, p in pm.inspect_notebook(path).items():
        try:
            out[name] = ast.literal_eval(p["default"])
        except (ValueError, SyntaxError):
            out[name] = p["default"]
    return out


def declared(notebook: str) -> dict[str, object]:
    """The notebook's parameters and their defaults, as its ``parameters`` cell sets them."""
    path = notebook_path(notebook)
    return dict(_declared(str(path), path.stat().st_mtime_ns))


def _expected(notebook: str, name: str, default, profile: str | None):
    if default is not None:
        return type(default)
    table = profiles.PROFILES.get(notebook, {})
    value = table.get(profile or "cpu", {}).get(name)
    return type(value) if value is not None else None  # None: anything (the notebook checks it)


_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
          dict: "a mapping", tuple: "a list"}


def _convert(notebook: str, name: str, value, kind):
    if kind is None or value is None:
        return value
    if isinstance(value, str) and kind is not str:
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ParameterError(f"parameter {name!r} of {notebook} expects {_NAMES.get(kind, kind.__name__)}, "
                                 f"got {value!r} (not valid YAML)") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind in (list, tuple) and isinstance(value, tuple):
        return list(value)
    if value is None or isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise ParameterError(f"parameter {name!r} of {notebook} expects {_NAMES.get(kind, kind.__name__)}, "
                         f"got {value!r} ({type(value).__name__})")


def coerce(notebook: str, values: dict, profile: str | None = None) -> dict:
    """``values`` with each converted to its parameter's type; an unknown name or a wrong type is a
    :class:`ParameterError`."""
    spec = declared(notebook)
    unknown = sorted(set(values) - set(spec))
    if unknown:
        raise ParameterError(f"{notebook} has no parameter {', '.join(map(repr, unknown))}; its parameters: "
                             f"{', '.join(spec)}")
    profile = values.get("profile", profile or spec.get("profile"))
    if profile not in profiles.PROFILE_NAMES:
        raise ParameterError(f"parameter 'profile' of {notebook} must be one of {profiles.PROFILE_NAMES}, got {profile!r}")
    return {k: _convert(notebook, k, v, _expected(notebook, k, spec[k], profile)) for k, v in values.items()}


def describe(notebook: str, values: dict) -> str:
    """``ran with data <data>, profile <profile>; non-default parameters: ...`` (those that differ
    from the notebook's own defaults, the profile aside)."""
    spec = declared(notebook)
    changed = [f"{k}={values[k]!r}" for k in spec if k in values and k not in ("profile", "data", "results_dir",
                                                                               "results_name")
               and values[k] != spec[k]]
    data = values.get("data", spec.get("data", "default"))
    shown = "the default data" if data in (None, "default") else f"your folder {Path(str(data)).name!r}"
    head = f"ran with {shown}, profile {values.get('profile', spec.get('profile'))!r}" if "data" in spec else \
        f"ran with profile {values.get('profile', spec.get('profile'))!r}"
    return head + "; non-default parameters: " + (", ".join(changed) if changed else "none")


def check_available(notebook: str, values: dict) -> None:
    """What a run needs besides valid parameters, checked before it starts: torchvision's weights
    (never downloaded) must already be in the torch cache."""
    if values.get("weights") != "torchvision":
        return
    from ..learning import weightsources
    from ..learning.experimentconfig import MODEL_NAMES

    wanted = values.get("models_to_run") or [values.get("model", "vit")]
    missing = [str(weightsources.torchvision_checkpoint(m)) for m in wanted if m in MODEL_NAMES
               and not weightsources.torchvision_checkpoint(m).exists()]
    if missing:
        raise ParameterError(f"weights='torchvision' needs torchvision's checkpoints in the torch cache, and "
                             f"{len(missing)} are not there ({', '.join(Path(m).name for m in missing)}); this "
                             "project never downloads them: copy them into the torch cache, or use weights='bundled'")


def apply(notebook: str, namespace: dict) -> str:
    """Check and convert the notebook's parameters in its own ``namespace`` (``globals()``), in
    place; return :func:`describe`'s line."""
    spec = declared(notebook)
    values = coerce(notebook, {k: namespace[k] for k in spec if k in namespace})
    namespace.update(values)
    return describe(notebook, values)
