"""The reader's check at the book's width: a small page made to break each rule, and one that
breaks none (headless Chromium; `make test` installs it first)."""

import os

import pytest

from cbirlib.reporting import book, layoutcheck

pytestmark = pytest.mark.skipif(book.chromium() is None and os.environ.get("CBIR_REQUIRE_ASSETS") != "1",
                                reason="needs Chromium (make chromium)")

PAGE = """<!DOCTYPE html><html><head><style>
body {{ margin: 0; font: 16px sans-serif; }}
article.bd-article {{ width: {width}px; margin-left: 40px; }}
.scroll {{ overflow-x: auto; max-width: 100%; }}
td, th {{ padding: 2px 6px; }}
</style></head><body><article class="bd-article">
<h1>A page</h1><p>Some text that wraps as text should wrap inside its column, however long it gets.</p>
{body}
</article></body></html>"""


def problems(tmp_path, body: str, width: int = 1000) -> list:
    page = tmp_path / "page.html"
    page.write_text(PAGE.format(width=width, body=body))
    return layoutcheck.check_layout(tmp_path, ["page.html"])


def kinds(found) -> set[str]:
    return {p.kind for p in found}


def test_a_clean_page_has_no_problem(tmp_path):
    table = "<div class='scroll'><table><tr><th>claim</th><th>paper</th><th>ours</th></tr>" \
            "<tr><td>a</td><td>0.9</td><td>0.5</td></tr></table></div>"
    assert problems(tmp_path, table) == []
    assert not list(tmp_path.glob(".layout-*")), "the probe copy is removed"


def test_a_narrow_column(tmp_path):
    assert kinds(problems(tmp_path, "", width=600)) == {"narrow column"}


def test_a_wide_table_without_its_own_scroll_box_overflows(tmp_path):
    row = "".join(f"<td>column{i:02d}-wide-cell-content</td>" for i in range(12))
    assert "overflow" in kinds(problems(tmp_path, f"<table><tr>{row}</tr></table>"))


def test_a_scrolling_table_must_show_its_first_columns(tmp_path):
    wide = "<td style='min-width:420px'>x</td>"
    table = f"<div class='scroll'><table><tr>{wide * 6}</tr></table></div>"
    found = problems(tmp_path, table)
    assert kinds(found) == {"first columns hidden"}, found


def test_clipped_and_overlapping_text(tmp_path):
    clipped = "<p style='width:80px;overflow:hidden;white-space:nowrap'>a sentence far too long for its box</p>"
    spill = ("<table style='table-layout:fixed;width:300px'><colgroup><col style='width:60px'><col></colgroup>"
             "<tr><td style='white-space:nowrap'>0.02138 [0.01352, 0.02924]</td><td>next</td></tr></table>")
    assert kinds(problems(tmp_path, clipped)) == {"clipped text"}
    assert kinds(problems(tmp_path, spill)) == {"overlapping text"}


def test_math_typeset_for_screen_readers_is_not_clipped_text(tmp_path):
    hidden = ("<mjx-container><span style='display:inline-block;width:5px;overflow:hidden;white-space:nowrap'>"
              "M times N for a screen reader</span></mjx-container>")
    assert problems(tmp_path, hidden) == []


def test_log_lines_in_outputs_are_problems(tmp_path):
    for line in ("Collecting tensor data and making histogram ...", "Percentile : (0.0010000000000047748,99.999)",
                 "epochs:  40%|####      | 4/10 [00:03<00:05,  1.10it/s]"):
        soup = book.BeautifulSoup(f"<html><body><div class='output'><pre>{line}</pre></div></body></html>",
                                  "html.parser")
        assert [p.kind for p in book._leaks("page.html", soup)] == ["log line"], line
