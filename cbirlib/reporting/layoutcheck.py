"""What a reader sees at the book's width: each page laid out by headless Chromium at 1280 px, and
a script in the page measures what overflows, what is clipped and what overprints.

:func:`check_layout` copies each page beside itself with :data:`SCRIPT` added (so its styles and
images load as they would), lets Chromium lay it out, and reads back the script's report from the
DOM. A page fails on

- ``narrow column``: the content column is narrower than :data:`MIN_COLUMN_SHARE` of the window;
- ``overflow``: a table, figure, image or output block reaches past the content column without a
  scroll box of its own inside the column;
- ``first columns hidden``: a table scrolls in its own box but its first columns (up to four: the
  claim, the paper, ours, the verdict) do not all fit the visible part of the box;
- ``clipped text``: text cut off by its box (``overflow: hidden`` with more content than room);
- ``overlapping text``: the content of a table cell spills into its neighbours.
"""

from __future__ import annotations

import json
from pathlib import Path

from bs4 import BeautifulSoup

from .book import GENERATED_PAGES, Problem, render

#: the content column must be at least this share of the window's width
MIN_COLUMN_SHARE = 0.6
#: the window the book is checked at (px)
WIDTH = 1280
REPORT_ID = "cbir-layout-report"

SCRIPT = """
<script>
(function () {
  function text(el) {
    var t = (el.innerText || el.alt || el.getAttribute('src') || el.tagName).replace(/\\s+/g, ' ').trim();
    return t.slice(0, 80);
  }
  function scrollBox(el, stop) {
    for (var a = el; a && a !== stop; a = a.parentElement) {
      var s = getComputedStyle(a);
      if (s.overflowX === 'auto' || s.overflowX === 'scroll') return a;
    }
    return null;
  }
  function run() {
    var vw = window.innerWidth;
    var col = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
    var c = col.getBoundingClientRect();
    var problems = [];
    function add(kind, el, detail) { problems.push({kind: kind, what: el ? text(el) : '', detail: detail}); }
    if (c.width < %(share)s * vw) add('narrow column', null, Math.round(c.width) + ' of ' + vw + ' px');
    var seen = new Set();
    col.querySelectorAll('table, img, svg, pre, figure, .cell_output > div, mjx-container').forEach(function (el) {
      var r = el.getBoundingClientRect();
      if (r.width === 0 || r.height === 0) return;
      var box = scrollBox(el, col);
      var edge = box ? box.getBoundingClientRect() : r;
      if ((edge.right > c.right + 2 || edge.left < c.left - 2) && !seen.has(box || el)) {
        seen.add(box || el);
        add('overflow', el, Math.round(edge.right - c.right) + ' px past the column');
      }
    });
    col.querySelectorAll('table').forEach(function (t) {
      var box = scrollBox(t, col);
      if (!box || box.scrollWidth <= box.clientWidth + 1) return;
      var row = t.querySelector('tr');
      if (!row || !row.children.length) return;
      var k = Math.min(4, row.children.length);
      var cell = row.children[k - 1].getBoundingClientRect(), b = box.getBoundingClientRect();
      if (cell.right > b.right + 2) add('first columns hidden', t, 'column ' + k + ' ends ' +
                                        Math.round(cell.right - b.right) + ' px past the visible box');
    });
    col.querySelectorAll('td, th, p, li, span, a, figcaption, h1, h2, h3, h4, small').forEach(function (el) {
      // MathJax's hidden copy for screen readers and other visually hidden text are clipped on purpose
      if (el.closest('mjx-container, .sr-only, .visually-hidden')) return;
      var s = getComputedStyle(el);
      var over = el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0;
      // typeset math: its box holds MathJax's visible rendering beside an invisible copy for screen
      // readers that widens scrollWidth; what a reader sees is the rendering's width
      var typeset = el.classList.contains('math') ? el.querySelector('mjx-container') : null;
      if (typeset) over = typeset.getBoundingClientRect().width > el.clientWidth + 1 && el.clientWidth > 0;
      if (over && (s.overflowX === 'hidden' || s.overflowX === 'clip' || s.textOverflow === 'ellipsis')) {
        add('clipped text', el, el.scrollWidth + ' px of text in ' + el.clientWidth + ' px');
      } else if (over && (el.tagName === 'TD' || el.tagName === 'TH') && s.overflowX === 'visible') {
        add('overlapping text', el, el.scrollWidth + ' px of content in a ' + el.clientWidth + ' px cell');
      }
    });
    var pre = document.createElement('pre');
    pre.id = '%(report)s';
    pre.textContent = JSON.stringify({viewport: vw, column: Math.round(c.width), problems: problems});
    document.body.appendChild(pre);
  }
  window.addEventListener('load', function () { setTimeout(run, 300); });
})();
</script>
""" % {"share": MIN_COLUMN_SHARE, "report": REPORT_ID}


def measure(page: str | Path, width: int = WIDTH) -> dict:
    """Lay ``page`` out in Chromium at ``width`` px and return the script's report (viewport,
    column width in px, problems). The page is copied beside itself with the script added, then
    the copy is removed."""
    page = Path(page)
    probe = page.with_name(f".layout-{page.name}")
    html = page.read_text(encoding="utf-8")
    probe.write_text(html.replace("</body>", SCRIPT + "</body>") if "</body>" in html else html + SCRIPT,
                     encoding="utf-8")
    try:
        dom = render(probe, width=width, height=1000)
    finally:
        probe.unlink(missing_ok=True)
    el = BeautifulSoup(dom, "html.parser").find(id=REPORT_ID)
    if el is None:
        raise RuntimeError(f"{page}: the layout script did not report (the page did not finish loading)")
    return json.loads(el.get_text())


def check_layout(html_dir: str | Path, pages: list[str] | None = None, width: int = WIDTH) -> list[Problem]:
    """Every layout problem of the book's pages (all content pages by default) at ``width`` px."""
    root = Path(html_dir)
    if pages is None:  # every content page (a page that only redirects, like index.html, has no layout)
        pages = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.html")
                       if not p.relative_to(root).as_posix().startswith("_") and p.name not in GENERATED_PAGES
                       and 'http-equiv="refresh"' not in p.read_text(encoding="utf-8")[:2000].lower())
    problems = []
    for rel in pages:
        report = measure(root / rel, width)
        for p in report["problems"]:
            problems.append(Problem(rel, p["kind"], f"{p['what'][:60]!r}: {p['detail']}" if p["what"] else p["detail"]))
    return problems
