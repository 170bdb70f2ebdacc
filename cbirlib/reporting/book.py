"""The rendered book: prepare executed notebooks for it and check the built HTML as a reader would.

- :func:`hide_injected_parameters` folds papermill's ``injected-parameters`` cell behind a toggle
  (the parameters stay one click away; the page opens on the chapter's text).
- :func:`check_site` reads every built page and lists what a reader would trip over: a missing
  image, a broken internal link or anchor, an external URL (the book must work offline), an empty
  table, an error cell.
- :func:`render` opens pages in headless Chromium: it saves screenshots and returns the DOM after
  scripts ran, so a test can see that the vendored MathJax typeset the equations.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
from bs4 import BeautifulSoup

HIDE_TAG = "hide-cell"
#: pages Sphinx generates that hold no content of ours
GENERATED_PAGES = ("genindex.html", "search.html")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")


def hide_injected_parameters(path: str | Path) -> bool:
    """Tag the ``injected-parameters`` cell of a notebook ``hide-cell`` (in place).
    Returns True when the notebook has such a cell."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    found = False
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags:
            found = True
            if HIDE_TAG not in tags:
                tags.append(HIDE_TAG)
    if found:
        nbformat.write(nb, path)
    return found


@dataclass(frozen=True)
class Problem:
    page: str
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.page}: {self.kind}: {self.detail}"


def _is_external(url: str) -> bool:
    scheme = urlsplit(url).scheme
    return url.startswith("//") or scheme in ("http", "https", "ftp", "ws", "wss")


def _ids_of(soup: BeautifulSoup) -> set[str]:
    return {t["id"] for t in soup.find_all(id=True)} | {t["name"] for t in soup.find_all("a", attrs={"name": True})}


def _ids(html_file: Path, cache: dict[Path, set[str]]) -> set[str]:
    """The anchors of a page, parsed once: the pages the check reads are in ``cache`` already."""
    if html_file not in cache:
        cache[html_file] = _ids_of(BeautifulSoup(html_file.read_text(encoding="utf-8"), "html.parser"))
    return cache[html_file]


def check_site(html_dir: str | Path) -> list[Problem]:
    """Every problem found in the built book under ``html_dir`` (empty list: all good).

    Checks, on every page except Sphinx's generated index and search pages: ``img``/``script``/
    ``link``/``source`` resources exist locally (``data:`` images must decode to something);
    internal ``a href`` targets and ``#anchors`` exist; no URL points off the machine; every table
    has at least one data cell; no cell shows a traceback; no output shows a warning, a library log
    line or an absolute path of this machine (:data:`LEAKS`).
    """
    root = Path(html_dir)
    if not (root / "index.html").exists():
        raise FileNotFoundError(f"{root} has no index.html: build the book first (make book)")
    problems: list[Problem] = []
    id_cache: dict[Path, set[str]] = {}
    anchors: list[tuple[str, Path, str, str]] = []  # page, target page, #fragment, URL: checked once all are read
    for page in sorted(root.rglob("*.html")):
        rel = page.relative_to(root).as_posix()
        if rel.startswith("_static/") or rel in GENERATED_PAGES:
            continue
        soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
        id_cache[page.resolve()] = _ids_of(soup)
        for tag, attr in (("img", "src"), ("script", "src"), ("link", "href"), ("source", "src"),
                          ("iframe", "src"), ("a", "href")):
            for el in soup.find_all(tag, attrs={attr: True}):
                url = el[attr].strip()
                if _is_external(url):
                    problems.append(Problem(rel, "external URL", f"<{tag} {attr}={url!r}>"))
                    continue
                if url.startswith(("mailto:", "javascript:")):
                    continue
                if url.startswith("data:"):
                    payload = url.partition(",")[2]
                    if not payload or (";base64" in url.partition(",")[0] and not base64.b64decode(payload)):
                        problems.append(Problem(rel, "empty image", f"<{tag}> with an empty data: URI"))
                    continue
                parts = urlsplit(url)
                target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
                if not target.exists():
                    kind = "missing image" if tag == "img" else "broken link" if tag == "a" else "missing resource"
                    problems.append(Problem(rel, kind, url))
                elif tag == "a" and parts.fragment and target.suffix == ".html":
                    anchors.append((rel, target.resolve(), unquote(parts.fragment), url))
        for table in soup.find_all("table"):
            if not table.find("td"):
                caption = table.find("caption")
                problems.append(Problem(rel, "empty table", caption.get_text(" ", strip=True) if caption else
                                        str(table)[:80]))
        for el in soup.select("div.output.traceback, div.output.error, pre.traceback"):
            problems.append(Problem(rel, "error cell", el.get_text(" ", strip=True)[:200]))
        problems += _leaks(rel, soup)
    problems += [Problem(rel, "broken anchor", url) for rel, target, fragment, url in anchors
                 if fragment not in _ids(target, id_cache)]
    return sorted(problems, key=lambda p: p.page)  # page by page, each page's in the order found


#: what a reader must never see: warnings, library log lines, absolute paths of this machine
LEAKS = (
    ("warning", re.compile(r"\b\w*(?:User|Deprecation|Runtime|Future|Syntax|Resource)Warning\b|\bwarnings\.warn\b")),
    ("log line", re.compile(r"^\s*(?:\[[\w. ]+\]\s*)?(?:WARNING|INFO|DEBUG|ERROR)\b[:|\]]|\b(?:WARNING|INFO|DEBUG)\s*[:|]\s",
                            re.MULTILINE)),
    ("absolute path", re.compile(r"(?<![\w.:/])/(?:root|home|tmp|work|usr|opt|var)/[\w.+-]+(?:/[\w.+-]+)*|site-packages")),
    # a library talking to its own log: onnxruntime's calibration, a progress bar, a logger's prefix
    ("log line", re.compile(r"^\s*(?:(?:Collecting tensor data|Finding optimal threshold|Calibrating|Quantizing)\b"
                            r"|Percentile\s*:).*$|\d+%\|[#█▉▊▋▌▍▎▏ ]*\||\d+(?:\.\d+)?(?:it/s|s/it)\]|"
                            r"^\s*(?:root|[\w.]+):(?:WARNING|INFO|DEBUG):", re.MULTILINE)),
)


def _leaks(rel: str, soup: BeautifulSoup) -> list[Problem]:
    """Warnings, log lines and absolute paths in a page's cell outputs and text (code the reader
    is meant to see, in ``div.cell_input``, is not output)."""
    out = []
    body = soup.select_one("main") or soup
    for tag in body.select("div.cell_input, script, style"):
        tag.decompose()
    text = body.get_text("\n")
    for kind, pattern in LEAKS:
        m = pattern.search(text)
        if m:
            out.append(Problem(rel, kind, m.group(0)[:120]))
    return out


def chromium() -> str | None:
    """Path of a Chromium binary (Debian ``chromium``) or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def render(page: str | Path, screenshot: str | Path | None = None, width: int = 1280, height: int = 1600,
           budget_ms: int = 15000, timeout_s: float = 120) -> str:
    """Open ``page`` in headless Chromium, let its scripts run (up to ``budget_ms`` of virtual
    time), optionally save a PNG screenshot; return the DOM as serialised after the scripts ran."""
    exe = chromium()
    if exe is None:
        raise FileNotFoundError("Chromium is not installed (Debian: apt-get install chromium); "
                                "`make book-check` installs it when run as root")
    page = Path(page).resolve()
    with tempfile.TemporaryDirectory() as profile:
        base = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                f"--virtual-time-budget={budget_ms}"]
        shot = []
        if screenshot is not None:  # the same launch dumps the DOM and then takes the screenshot
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            shot = [f"--screenshot={Path(screenshot).resolve()}"]
        return subprocess.run([*base, "--dump-dom", *shot, page.as_uri()], capture_output=True, text=True,
                              timeout=timeout_s, check=True).stdout


def check_rendered(html_dir: str | Path, screenshots: str | Path,
                   pages: dict[str, tuple[str, int]]) -> list[Problem]:
    """Render ``pages`` ({name: (page path relative to html_dir, screenshot height px)}) in Chromium, save
    ``<screenshots>/<name>.png``, and report pages whose DOM is empty, or that hold TeX math
    MathJax did not typeset (it must load offline from the vendored copy)."""
    root = Path(html_dir)
    problems = []
    for name, (rel, height) in pages.items():
        shot = Path(screenshots) / f"{name}.png"
        dom = render(root / rel, shot, height=height)
        soup = BeautifulSoup(dom, "html.parser")
        main = soup.find("main") or soup.body
        if main is None or len(main.get_text(strip=True)) < 200:
            problems.append(Problem(rel, "empty page", "rendered DOM has almost no text"))
        raw_math = soup.select("div.math, span.math")
        if raw_math and not soup.find("mjx-container"):
            problems.append(Problem(rel, "math not typeset", f"{len(raw_math)} formulas, no mjx-container "
                                    "(MathJax did not load offline)"))
        if not shot.exists() or shot.stat().st_size < 10_000:
            problems.append(Problem(rel, "no screenshot", str(shot)))
    return problems


def parameters_markdown(notebook: str | Path) -> str:
    """A notebook's parameters as a Markdown table for the rerun page: name, default (for a default
    of None, the value of each profile, :mod:`cbirlib.profiles`) and what it does (the comment
    beside it in the ``parameters`` cell, as papermill reads it)."""
    import papermill as pm

    from .. import profiles

    path = Path(notebook)
    table = profiles.PROFILES.get(path.stem, {})

    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ").strip()

    rows = ["| parameter | default | what it does |", "|---|---|---|"]
    for name, p in pm.inspect_notebook(str(path)).items():
        default = p["default"]
        if default == "None" and any(name in values for values in table.values()):
            default = "the profile's: " + "; ".join(f"{prof} `{values[name]!r}`" for prof, values in table.items()
                                                    if name in values)
        else:
            default = f"`{default}`"
        rows.append(f"| `{name}` | {cell(default)} | {cell(p.get('help') or '')} |")
    return "\n".join(rows) + "\n"


def _people(authors: list[dict]) -> str:
    names = [a["name"] if "name" in a else f"{a.get('given-names', '')} {a['family-names']}".strip()
             for a in authors]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def citation_markdown(cff_path: str | Path) -> str:
    """The book's citation section, generated from ``CITATION.cff`` (so the two never disagree):
    how to cite the companion and the paper (text and BibTeX), and every reference it lists."""
    import yaml

    cff = yaml.safe_load(Path(cff_path).read_text(encoding="utf-8"))
    paper = cff["preferred-citation"]
    lines = ["## Citing", "", cff["message"], "", "**The paper.** "
             f"{_people(paper['authors'])}. *{paper['title']}*. {paper.get('institution', {}).get('name', '')}.",
             "", f"**This companion.** {_people(cff['authors'])}. *{cff['title']}*, version {cff['version']}, "
             f"licence {cff['license']}.", "", "```bibtex",
             "@article{sadik_balancing_privacy,",
             f"  title  = {{{paper['title']}}},",
             "  author = {" + " and ".join(f"{a['family-names']}, {a['given-names']}" for a in paper["authors"]) + "},",
             f"  note   = {{{paper.get('institution', {}).get('name', '')}}}", "}",
             "@software{cbirlib,",
             f"  title   = {{{cff['title']}}},",
             f"  author  = {{{_people(cff['authors'])}}},",
             f"  version = {{{cff['version']}}},", f"  license = {{{cff['license']}}}", "}", "```", "",
             "## Works this companion uses", ""]
    for ref in cff.get("references", []):
        year = f" ({ref['year']})" if "year" in ref else ""
        lines.append(f"- {_people(ref['authors'])}{year}. *{ref['title']}*. {ref.get('notes', '')}.")
    return "\n".join(lines) + "\n"
