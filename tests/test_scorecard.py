"""Scorecard verdict rules on small hand-made result tables."""

import pandas as pd
import pytest

from cbirlib import paper, results, scorecard


def _write(root, notebook, name, rows, parameters=None):
    results.write_table(pd.DataFrame(rows), notebook, name, parameters or {"profile": "ci"}, root)


def _table_v_results(root, aes_paper_entropy):
    rows = []
    for method, vals in paper.TABLE_V.items():
        name = "MTCE (b=8, s=255)" if method == "MTCE" else method
        for metric, v in vals.items():
            rows.append(dict(method=name, metric=metric, source="paper",
                             value=aes_paper_entropy if (method, metric) == ("AES", "entropy") else v))
    ours = {"entropy": 7.35, "mse": 12000.0, "ssim": 0.5, "psnr": 7.0}
    for metric, v in ours.items():
        rows.append(dict(method="MTCE (b=8, s=255)", metric=metric, source="ours", value=v))
        rows.append(dict(method="AES-128-CTR", metric=metric, source="ours", value=v + (0.6 if metric == "entropy" else 0)))
    _write(root, "01_encryption", "table_v", rows)
    _write(root, "01_encryption", "aes_entropy_check", [
        dict(quantity="AES entropy printed in Table V", value=aes_paper_entropy, source="paper"),
        dict(quantity="|entropy_with_epsilon| of a constant image", value=paper.TABLE_V["AES"]["entropy"],
             source="ours")])


def test_table_v_verdicts(tmp_path):
    _table_v_results(tmp_path, paper.TABLE_V["AES"]["entropy"])
    rows = {r.claim: r for r in scorecard.table_v(scorecard.Results(tmp_path))}
    assert rows["MTCE entropy"].verdict == "reproduced"          # 7.35 vs 7.392, within 0.1 bit
    assert rows["MTCE mse"].verdict == "reproduced"              # within 10 %
    assert rows["MTCE ssim"].verdict == "differs"                # 0.5 vs 0.273
    assert rows["AES entropy"].verdict == "paper error"          # the constant-image value
    assert rows["MTCE ssim"].difference == pytest.approx(0.5 - 0.273204)


def test_aes_entropy_is_not_called_an_error_without_the_evidence(tmp_path):
    _table_v_results(tmp_path, 7.99)
    rows = {r.claim: r for r in scorecard.table_v(scorecard.Results(tmp_path))}
    assert rows["AES entropy"].verdict == "reproduced"          # 7.95 vs 7.99: the tolerance decides


def test_key_space_verdicts(tmp_path):
    rows = [dict(block_size=8, count=c, term="total", bits=b, source="ours") for c, b in
            [("paper eq. (4)", 1000.0), ("cipher as implemented", 4000.0), ("effective key strength", 256.0)]]
    _write(tmp_path, "01_encryption", "key_space_bits", rows)
    eq4, eq5 = scorecard.key_space(scorecard.Results(tmp_path))
    assert eq4.verdict == "paper error" and eq5.verdict == "reproduced"
    rows[1]["bits"] = 1000.0
    _write(tmp_path, "01_encryption", "key_space_bits", rows)
    assert scorecard.key_space(scorecard.Results(tmp_path))[0].verdict == "reproduced"


def test_tolerance_edges():
    assert scorecard._within(0.97, 1.0, 0.03) == "reproduced"   # exactly the tolerance
    assert scorecard._within(0.97, 1.0, 0.029) == "differs"
    assert scorecard._within_rel(100.0, 110.0, 0.1) == "reproduced"


def test_missing_results_name_the_notebook(tmp_path):
    with pytest.raises(FileNotFoundError, match="run notebooks/01_encryption.ipynb"):
        scorecard.Results(tmp_path).table("01_encryption", "table_v")


def test_unknown_verdict_is_an_error():
    with pytest.raises(ValueError, match="verdict must be one of"):
        scorecard.Row("s", "i", "c", 1.0, 1.0, "fine", "", "x#y")


def test_build_tidy_counts_and_html(tmp_path):
    _table_v_results(tmp_path, paper.TABLE_V["AES"]["entropy"])
    card = scorecard.build(tmp_path, claims=[scorecard.table_v])
    assert len(card) == 8 and set(card.verdict) <= set(scorecard.VERDICTS)
    long = scorecard.tidy(card)
    assert sorted(long.source.unique()) == ["ours", "paper"] and len(long) == 16
    counts = scorecard.counts(card)
    assert list(counts.verdict) == list(scorecard.VERDICTS) and counts.claims.sum() == 8
    html = scorecard.to_html(card)
    assert 'href="01_encryption.html#table-v-beside-the-paper"' in html and "paper error" in html


def test_evidence_links_use_sphinx_section_ids():
    assert scorecard.evidence_href("01_encryption#Key space: eqs. (1)–(5)") == "01_encryption.html#key-space-eqs-1-5"
    assert scorecard.evidence_href("03_retrieval") == "03_retrieval.html"


def test_other_settings_read_not_comparable_with_the_reason(tmp_path):
    _table_v_results(tmp_path, paper.TABLE_V["AES"]["entropy"])
    _write(tmp_path, "01_encryption", "table_v", results.read_table("01_encryption", "table_v", tmp_path).to_dict("records"),
           {"profile": "ci", "block_size": 16})
    card = scorecard.build(tmp_path, claims=[scorecard.table_v])
    assert list(card.verdict) == ["not comparable here"]
    assert "block_size = 16" in card.note.iloc[0] and "judged on 8" in card.note.iloc[0]


def test_missing_evidence_never_crashes_and_names_no_machine_path(tmp_path):
    card = scorecard.build(tmp_path, claims=[scorecard.memory, scorecard.fig_4])
    assert set(card.verdict) == {"not comparable here"} and len(card) == 2
    assert not card.note.str.contains(str(tmp_path)).any()
    html = scorecard.to_html(card)
    assert 'href=".html"' not in html


def test_the_data_row_describes_the_data_that_ran(tmp_path):
    _write(tmp_path, "00_data", "dataset_counts",
           [dict(label="a", split="train", images=10, source="ours"), dict(label="a", split="train", images=1000, source="paper")],
           {"profile": "ci", "data": "/somewhere/my-scans"})
    row = scorecard.build(tmp_path, claims=[scorecard.dataset]).iloc[0]
    assert "my-scans" in row.note and "13 people" not in row.note


def test_every_evidence_link_names_a_section_of_its_chapter():
    """The scorecard's links point at headings the chapters have (a renamed heading breaks the book)."""
    import json
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    links = set(re.findall(r'"(\d\d_[a-z_]+)#([^"]+)"', (root / "cbirlib" / "scorecard.py").read_text()))
    assert links
    for nb, section in links:
        cells = json.loads((root / "notebooks" / f"{nb}.ipynb").read_text())["cells"]
        heads = {line.lstrip("#").strip() for c in cells if c["cell_type"] == "markdown"
                 for line in "".join(c["source"]).splitlines() if line.startswith("#")}
        assert section in heads, f"{nb} has no section {section!r}"
