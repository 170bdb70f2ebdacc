"""One typed configuration per chapter (cbirlib.studies.chapters): the same setup cell in every
notebook, fields that match the notebook's parameters, the profile's values where a parameter is
None, clear errors before any work."""

import dataclasses
import json
from pathlib import Path

import pytest

from cbirlib import profiles
from cbirlib.learning.experimentconfig import ExperimentError
from cbirlib.studies import chapters, parameters

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))


def _fields(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init and f.name != "given"]


def test_every_notebook_has_a_chapter_whose_fields_are_its_parameters():
    assert set(chapters.CHAPTERS) == set(NOTEBOOKS)
    for nb, cls in chapters.CHAPTERS.items():
        assert sorted(_fields(cls)) == sorted(parameters.declared(nb)), nb


def test_every_setup_cell_is_the_same_three_lines():
    setups = {}
    for nb in NOTEBOOKS:
        cells = [c for c in json.loads((ROOT / "notebooks" / f"{nb}.ipynb").read_text())["cells"]
                 if c["cell_type"] == "code" and "injected-parameters" not in c["metadata"].get("tags", [])]
        setups[nb] = "".join(cells[1]["source"])  # the first cell after the parameters
    for nb, text in setups.items():
        assert text.replace(nb, "<chapter>") == setups["01_encryption"].replace("01_encryption", "<chapter>"), nb
        assert len(text.strip().splitlines()) <= 4 and "chapters.configure" in text, nb


@pytest.mark.parametrize("profile", profiles.PROFILE_NAMES)
def test_none_takes_the_profile_value_and_an_explicit_value_wins(profile):
    cfg = chapters.build("01_encryption", {"profile": profile})
    table = profiles.PROFILES["01_encryption"][profile]
    assert cfg.images_per_class == table["images_per_class"] and cfg.throughput_images == table["throughput_images"]
    assert chapters.build("01_encryption", {"profile": profile, "images_per_class": 3}).images_per_class == 3
    assert cfg.record()["profile"] == profile and "results_dir" not in cfg.record()


def test_the_record_is_what_the_tables_carry():
    cfg = chapters.build("03_retrieval", {"profile": "ci", "k": 7})
    rec = cfg.record()
    assert rec["k"] == 7 and rec["n_queries"] == profiles.PROFILES["03_retrieval"]["ci"]["n_queries"]
    assert rec["image_size"] == cfg.experiment.image_size and "progress" not in rec and "results_name" not in rec
    two = chapters.build("02_classification", {"profile": "ci"})
    assert [e.model for e in two.experiments] == two.models_to_run
    assert two.record()["models"] == two.models_to_run


def test_summary_says_what_ran():
    text = chapters.build("02_classification", {"profile": "ci", "seed": 3}).summary()
    assert text.startswith("ran with the default data, profile 'ci'; non-default parameters: seed=3")
    assert "what differs from Table IV" in text
    assert chapters.build("00_data", {"profile": "ci"}).summary().count("\n") == 0


@pytest.mark.parametrize("nb, values, error, match", [
    ("01_encryption", {"colour": "red"}, parameters.ParameterError, "has no parameter 'colour'"),
    ("01_encryption", {"block_size": "sixteen"}, parameters.ParameterError, "expects an integer"),
    ("01_encryption", {"profile": "huge"}, parameters.ParameterError, "must be one of"),
    ("06_key_aware", {"model": "vgg16"}, ExperimentError, "Vision Transformers only"),
    ("02_classification", {"models_to_run": ["resnet"]}, ExperimentError, "unknown model"),
    ("nope", {}, parameters.ParameterError, "no chapter"),
])
def test_bad_parameters_are_clear_errors_before_any_work(nb, values, error, match):
    with pytest.raises(error, match=match):
        chapters.build(nb, {"profile": "ci"} | values)


def test_configure_checks_the_notebooks_globals_in_place():
    namespace = parameters.declared("01_encryption") | {"profile": "ci", "block_size": "16"}
    cfg = chapters.configure("01_encryption", namespace)
    assert namespace["block_size"] == 16 and cfg.block_size == 16
    assert dataclasses.is_dataclass(cfg) and type(cfg) is chapters.EncryptionChapter
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.block_size = 4


def test_chapters_and_studies_take_their_keys_by_role():
    """One key and seed policy: experiment keys come from keys.experiment_key by role, never from a
    seed offset written in a chapter or a study."""
    texts = {p.name: p.read_text() for p in (ROOT / "notebooks").glob("*.ipynb")}
    texts |= {p.name: p.read_text() for p in (ROOT / "cbirlib" / "studies").glob("*.py")}
    assert [name for name, text in texts.items() if "from_seed(" in text] == []
