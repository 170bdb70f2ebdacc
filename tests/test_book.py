"""The book's helpers: checks of the built HTML, injected-parameter folding, citation from CITATION.cff."""

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from cbirlib.reporting import book

ROOT = Path(__file__).resolve().parents[1]

GOOD = """<html><head><link rel="stylesheet" href="_static/style.css"></head><body><main>
<h1 id="top">Title</h1><img src="_static/fig.png" alt="x">
<img src="data:image/png;base64,iVBORw0KGgo=">
<a href="other.html#sec">other</a> <a href="#top">up</a> <a href="mailto:a@b.c">mail</a>
<table><tr><th>a</th></tr><tr><td>1</td></tr></table></main></body></html>"""


def _site(tmp_path: Path, index: str) -> Path:
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "style.css").write_text("")
    (tmp_path / "_static" / "fig.png").write_bytes(b"png")
    (tmp_path / "other.html").write_text('<html><body><h2 id="sec">S</h2></body></html>')
    (tmp_path / "index.html").write_text(index)
    return tmp_path


def test_clean_site_has_no_problems(tmp_path):
    assert book.check_site(_site(tmp_path, GOOD)) == []


@pytest.mark.parametrize("fragment, kind", [
    ('<img src="_static/missing.png">', "missing image"),
    ('<a href="nowhere.html">x</a>', "broken link"),
    ('<a href="other.html#no-such-section">x</a>', "broken anchor"),
    ('<a href="#no-such-id">x</a>', "broken anchor"),
    ('<script src="https://cdn.example.org/mathjax.js"></script>', "external URL"),
    ('<link href="//fonts.example.org/x.css" rel="stylesheet">', "external URL"),
    ('<table><tr><th>only a header</th></tr></table>', "empty table"),
    ('<div class="output traceback"><pre>ZeroDivisionError</pre></div>', "error cell"),
    ('<img src="data:image/png;base64,">', "empty image"),
])
def test_each_problem_is_found(tmp_path, fragment, kind):
    site = _site(tmp_path, GOOD.replace("</main>", fragment + "</main>"))
    problems = book.check_site(site)
    assert [p.kind for p in problems] == [kind], problems
    assert "index.html" in str(problems[0])


def test_check_site_needs_a_built_book(tmp_path):
    with pytest.raises(FileNotFoundError, match="build the book first"):
        book.check_site(tmp_path)


def test_injected_parameters_are_folded(tmp_path):
    nb = new_notebook(cells=[new_code_cell("a = 1", metadata={"tags": ["parameters"]}),
                             new_code_cell("a = 2", metadata={"tags": ["injected-parameters"]})])
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    assert book.hide_injected_parameters(path)
    assert book.hide_injected_parameters(path)  # idempotent
    cells = nbformat.read(path, as_version=4).cells
    assert cells[0].metadata.tags == ["parameters"]
    assert cells[1].metadata.tags == ["injected-parameters", book.HIDE_TAG]
    nbformat.write(new_notebook(cells=[new_code_cell("x")]), path)
    assert not book.hide_injected_parameters(path)


def test_citation_comes_from_citation_cff():
    import yaml

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    text = book.citation_markdown(ROOT / "CITATION.cff")
    assert cff["preferred-citation"]["title"] in text
    assert "@article{" in text and "@software{" in text
    for ref in cff["references"]:
        assert ref["title"] in text


@pytest.mark.parametrize("output, kind", [
    ("/work/main/cbirlib/learning/train.py:368: UserWarning: weights='auto' ...", "warning"),
    ("DeprecationWarning: You are using the legacy exporter", "warning"),
    ("WARNING: Please use quant_pre_process to pre-process the model", "log line"),
    ("[IPKernelApp] WARNING | Kernel is running over TCP", "log line"),
    ("INFO: calibrating 64 images", "log line"),
    ("saved to /root/.cache/torch/hub/checkpoints/x.pth", "absolute path"),
    ("read /tmp/cbir-quant-1234/fp32.onnx", "absolute path"),
    ("from .venv/lib/python3.11/site-packages/onnx", "absolute path"),
])
def test_leaks_in_outputs_are_problems(tmp_path, output, kind):
    page = GOOD.replace("</main>", f'<div class="cell_output"><pre>{output}</pre></div></main>')
    problems = book.check_site(_site(tmp_path, page))
    assert any(p.kind == kind for p in problems), problems


def test_code_the_reader_is_meant_to_see_is_not_a_leak(tmp_path):
    page = GOOD.replace("</main>", '<div class="cell_input"><pre>import warnings  # /work/x</pre></div>'
                        '<p>Relative paths such as data/cache/files and make run PARAMS are fine.</p></main>')
    assert book.check_site(_site(tmp_path, page)) == []


def test_the_rerun_page_shows_each_notebooks_parameters_as_a_table():
    from cbirlib import paths

    md = book.parameters_markdown(paths.project_root() / "notebooks" / "02_classification.ipynb")
    lines = md.splitlines()
    assert lines[0] == "| parameter | default | what it does |" and all(l.count("|") >= 4 for l in lines)
    image_size = next(l for l in lines if l.startswith("| `image_size`"))
    assert "ci `56`" in image_size and "cpu `112`" in image_size and "paper `224`" in image_size
    profile = next(l for l in lines if l.startswith("| `profile`"))
    assert "ci \\| cpu \\| paper" in profile  # a pipe inside a cell is escaped
