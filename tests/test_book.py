"""The book's helpers: checks of the built HTML, injected-parameter folding, citation from CITATION.cff."""

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from cbirlib import book

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
