"""Scorecard verdict rules on small hand-made result tables."""

import pandas as pd
import pytest

from cbirlib import paper, results
from cbirlib.reporting import claims, scorecard, verdicts


def _write(root, notebook, name, rows, parameters=None):
    results.write_table(pd.DataFrame(rows), notebook, name, parameters or {"profile": "ci"}, root)


def _table_v_results(root, aes_paper_entropy):
    rows = []
    for method, vals in paper.TABLE_V.items():
        name = "MTCE (b=8, s=255)" if method == "MTCE" else method
        for metric, v in vals.items():
            rows.append(dict(method=name, metric=metric, source="paper",
                             value=aes_paper_entropy if (method, metric) == ("AES", "entropy") else v))
    # means over 30 images with their standard deviations: intervals of ±0.37 std
    ours = {"entropy": (7.35, 0.2), "mse": (12000.0, 1500.0), "ssim": (0.5, 0.1), "psnr": (7.0, 0.5)}
    for metric, (v, sd) in ours.items():
        rows.append(dict(method="MTCE (b=8, s=255)", metric=metric, source="ours", value=v, std=sd, n=30))
        rows.append(dict(method="AES-128-CTR", metric=metric, source="ours", value=v + (0.6 if metric == "entropy" else 0),
                         std=sd, n=30))
    _write(root, "01_encryption", "table_v", rows)
    _write(root, "01_encryption", "aes_entropy_check", [
        dict(quantity="AES entropy printed in Table V", value=aes_paper_entropy, source="paper"),
        dict(quantity="|entropy_with_epsilon| of a constant image", value=paper.TABLE_V["AES"]["entropy"],
             source="ours")])


def test_table_v_verdicts(tmp_path):
    _table_v_results(tmp_path, paper.TABLE_V["AES"]["entropy"])
    rows = {r.claim: r for r in claims.table_v(scorecard.Results(tmp_path))}
    assert rows["MTCE entropy"].verdict == "reproduced"          # 7.392 inside 7.35 ± 0.075
    assert rows["MTCE mse"].verdict == "differs"                 # 12766 outside 12000 ± 560
    assert rows["MTCE psnr"].verdict == "differs"                # 7.07 inside 7.0 ± 0.19, but PSNR is MSE's
    assert "judged with MSE" in rows["MTCE psnr"].note
    assert rows["MTCE ssim"].verdict == "differs"                # 0.273 outside 0.5 ± 0.037
    assert rows["AES entropy"].verdict == "paper error"          # the constant-image value
    assert rows["AES mse"].verdict == "not comparable here"      # the paper's AES image was constant
    assert rows["MTCE ssim"].difference == pytest.approx(0.5 - 0.273204)
    assert rows["MTCE ssim"].n == 30 and rows["MTCE ssim"].low == pytest.approx(0.5 - 2.0452 * 0.1 / 30 ** 0.5, abs=1e-4)


def test_aes_entropy_is_not_called_an_error_without_the_evidence(tmp_path):
    _table_v_results(tmp_path, 7.99)
    rows = {r.claim: r for r in claims.table_v(scorecard.Results(tmp_path))}
    assert rows["AES entropy"].verdict == "not comparable here"  # no constant-image evidence: not judged as AES


def test_key_space_verdicts(tmp_path):
    rows = [dict(block_size=8, count=c, term="total", bits=b, source="ours") for c, b in
            [("paper eq. (4)", 1000.0), ("cipher as implemented", 4000.0), ("effective key strength", 256.0)]]
    _write(tmp_path, "01_encryption", "key_space_bits", rows)
    eq4, eq5 = claims.key_space(scorecard.Results(tmp_path))
    assert eq4.verdict == "paper error" and eq5.verdict == "reproduced"
    rows[1]["bits"] = 1000.0
    _write(tmp_path, "01_encryption", "key_space_bits", rows)
    assert claims.key_space(scorecard.Results(tmp_path))[0].verdict == "reproduced"


def test_tolerance_edges_for_quantities_without_noise():
    assert verdicts.tolerance_verdict(0.25, 0.26, "int8 / fp32 bytes") == "reproduced"   # exactly the tolerance
    assert verdicts.tolerance_verdict(0.25, 0.2601, "int8 / fp32 bytes") == "differs"
    assert verdicts.tolerance_verdict(1000.0, 1010.0, "key space bits") == "reproduced"   # 1 % of the paper's value


def test_a_rate_is_judged_by_its_interval_and_not_judged_when_not_comparable():
    row = verdicts.rate_row("S", "T", "c", 0.9, 0.85, 0.80, 0.91, 100, "", "x#y", True)
    assert row.verdict == "reproduced" and "inside" in row.note
    row = verdicts.rate_row("S", "T", "c", 0.95, 0.85, 0.80, 0.91, 100, "", "x#y", True)
    assert row.verdict == "differs"
    row = verdicts.rate_row("S", "T", "c", 0.95, 0.85, 0.80, 0.91, 100, "", "x#y", False, "a CPU stand-in")
    assert row.verdict == "not comparable here" and "a CPU stand-in" in row.note and "outside" in row.note


def _classification_results(root, profile, ours_acc):
    rows = []
    for model in ("vit", "vgg16"):
        for domain in ("plaintext", "MTCE 8-px blocks", "MTCE 1-px blocks"):
            for cls in ("a", "b", "c"):
                rows.append(dict(model=model, domain=domain, **{"class": cls}, metric="recall", value=0.9, source="paper"))
                rows.append(dict(model=model, domain=domain, **{"class": cls}, metric="support", value=20, source="ours"))
            rows.append(dict(model=model, domain=domain, **{"class": "all"}, metric="accuracy",
                             value=ours_acc[domain], source="ours"))
    _write(root, "02_classification", "table_vi_vii", rows, {"profile": profile})


def test_classification_has_one_row_per_model_and_domain_judged_only_at_the_paper_profile(tmp_path):
    accs = {"plaintext": 0.9, "MTCE 8-px blocks": 0.6, "MTCE 1-px blocks": 0.25}
    _classification_results(tmp_path, "paper", accs)
    rows = claims.tables_vi_vii(scorecard.Results(tmp_path))
    assert len(rows) == 2 * 3 + 2  # no figure duplicates: Figs. 6-7 share the tables' rows
    by = {(r.claim.split(",")[0], r.claim.split(",")[1].split(":")[0].strip()): r for r in rows[:6]}
    assert by[("ViT", "plaintext")].verdict == "reproduced" and by[("ViT", "plaintext")].n == 60
    assert by[("ViT", "8-px blocks")].verdict == "differs"
    assert rows[6].verdict == "reproduced"  # 0.9 > 0.6 > 0.25 with intervals apart at n = 60
    _classification_results(tmp_path, "cpu", accs)
    rows = claims.tables_vi_vii(scorecard.Results(tmp_path))
    assert {r.verdict for r in rows[:6]} == {"not comparable here"}
    assert all("not the paper's setup" in r.note for r in rows[:6])


def test_missing_results_name_the_notebook(tmp_path):
    with pytest.raises(FileNotFoundError, match="run notebooks/01_encryption.ipynb"):
        scorecard.Results(tmp_path).table("01_encryption", "table_v")


def test_unknown_verdict_is_an_error():
    with pytest.raises(ValueError, match="verdict must be one of"):
        verdicts.Row("s", "i", "c", 1.0, 1.0, "fine", "", "x#y")


def test_build_tidy_counts_and_html(tmp_path):
    _table_v_results(tmp_path, paper.TABLE_V["AES"]["entropy"])
    card = scorecard.build(tmp_path, claims=[claims.table_v])
    assert len(card) == 8 and set(card.verdict) <= set(verdicts.VERDICTS)
    assert card.loc[card.claim == "MTCE ssim", "low"].notna().all()
    long = scorecard.tidy(card)
    assert sorted(long.source.unique()) == ["ours", "paper"] and len(long) == 16
    assert long.loc[long.source == "paper", "low"].isna().all()
    counts = scorecard.counts(card)
    assert list(counts.verdict) == list(verdicts.VERDICTS) and counts.claims.sum() == 8
    html = scorecard.to_html(card)
    assert 'href="01_encryption.html#table-v-beside-the-paper"' in html and "paper error" in html
    assert "n&nbsp;=&nbsp;30" in html  # the interval and its count under ours, never broken apart
    # reading order: the claim, the two numbers and the verdict first; no fixed layout to overprint
    assert html.index("<th>claim</th>") < html.index("<th>paper</th>") < html.index("<th>ours</th>") \
        < html.index("<th>verdict</th>") < html.index("<th>evidence</th>")
    assert "table-layout" not in html and html.startswith('<div class="scorecard-box">')


def test_evidence_links_use_sphinx_section_ids():
    assert scorecard.evidence_href("01_encryption#Key space: eqs. (1)–(5)") == "01_encryption.html#key-space-eqs-1-5"
    assert scorecard.evidence_href("03_retrieval") == "03_retrieval.html"


def test_other_settings_read_not_comparable_with_the_reason(tmp_path):
    _table_v_results(tmp_path, paper.TABLE_V["AES"]["entropy"])
    _write(tmp_path, "01_encryption", "table_v", results.read_table("01_encryption", "table_v", tmp_path).to_dict("records"),
           {"profile": "ci", "block_size": 16})
    card = scorecard.build(tmp_path, claims=[claims.table_v])
    assert list(card.verdict) == ["not comparable here"]
    assert "block_size = 16" in card.note.iloc[0] and "judged on 8" in card.note.iloc[0]


def test_missing_evidence_never_crashes_and_names_no_machine_path(tmp_path):
    card = scorecard.build(tmp_path, claims=[claims.memory, claims.fig_4])
    assert set(card.verdict) == {"not comparable here"} and len(card) == 2
    assert not card.note.str.contains(str(tmp_path)).any()
    html = scorecard.to_html(card)
    assert 'href=".html"' not in html


def test_the_data_row_describes_the_data_that_ran(tmp_path):
    _write(tmp_path, "00_data", "dataset_counts",
           [dict(label="a", split="train", images=10, source="ours"), dict(label="a", split="train", images=1000, source="paper")],
           {"profile": "ci", "data": "/somewhere/my-scans"})
    row = scorecard.build(tmp_path, claims=[claims.dataset]).iloc[0]
    assert "my-scans" in row.note and "12 people" not in row.note


def test_every_evidence_link_names_a_section_of_its_chapter():
    """The scorecard's links point at headings the chapters have (a renamed heading breaks the book)."""
    import json
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    links = set(re.findall(r'"(\d\d_[a-z_]+)#([^"]+)"', (root / "cbirlib" / "reporting" / "claims.py").read_text()))
    assert links
    for nb, section in links:
        cells = json.loads((root / "notebooks" / f"{nb}.ipynb").read_text())["cells"]
        heads = {line.lstrip("#").strip() for c in cells if c["cell_type"] == "markdown"
                 for line in "".join(c["source"]).splitlines() if line.startswith("#")}
        assert section in heads, f"{nb} has no section {section!r}"


def test_the_forest_plot_draws_every_claim_with_an_interval(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from cbirlib.reporting import plots

    _table_v_results(tmp_path, paper.TABLE_V["AES"]["entropy"])
    _classification_results(tmp_path, "cpu", {"plaintext": 0.9, "MTCE 8-px blocks": 0.6, "MTCE 1-px blocks": 0.35})
    card = scorecard.build(tmp_path, claims=[claims.table_v, claims.tables_vi_vii])
    fig = plots.scorecard_forest(card)
    rates, means = fig.axes[:2]
    assert len(rates.get_yticklabels()) == 6  # the six accuracy rows
    assert len(means.get_yticklabels()) == 7  # Table V without the paper's ~0-bit AES entropy
    assert min(t.get_fontsize() for ax in fig.axes for t in ax.get_yticklabels() + ax.get_xticklabels()) >= 9
    assert rates.get_xlim() == (0.0, 1.0)


def test_attack_scores_get_their_own_axis_in_the_forest_plot():
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from cbirlib.reporting import plots

    row = dict(section="Classification", item="Table VI", claim="ViT: accuracy", paper=0.9, ours=0.5, low=0.45,
               high=0.55, n=900, difference=-0.4, unit="", verdict="differs", note="", evidence="")
    card = pd.DataFrame([row, row | dict(section="Security", claim="blocks reassembled", unit="share", paper="x",
                                         ours=0.14, low=0.11, high=0.17, verdict="differs"),
                         row | dict(section="Security", claim="probe", unit="probe accuracy", ours=0.57)])
    fig = plots.scorecard_forest(card)
    accuracy, attacks = fig.axes
    assert [t.get_text() for t in attacks.get_yticklabels()] == ["blocks reassembled"]
    assert len(accuracy.get_yticklabels()) == 2 and "accuracy" in accuracy.get_xlabel()


def test_the_forest_plot_of_a_run_with_nothing_comparable_says_so(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from cbirlib.reporting import plots

    card = scorecard.build(tmp_path, claims=[claims.memory, claims.fig_4])  # evidence missing
    fig = plots.scorecard_forest(card)
    assert any("no measured claim" in t.get_text() for ax in fig.axes for t in ax.texts)


def _security_results(root, excess, sweep):
    """Security tables from synthetic trials: 24 images whose jigsaw score beats a random placement
    by ``excess``; a known-plaintext attack that breaks a shared key and not per-image keys; written
    as the chapter's own tables (means only, an older format) and, if ``sweep``, as the sweep's."""
    import numpy as np

    from cbirlib.studies import securitystudy as ss

    rng = np.random.default_rng(0)
    jig, kpa = [], []
    for attack in ss.JIGSAW_ATTACKS:
        for i in range(24):
            gain = 0.5 if attack == "block shuffle only" else excess
            values = dict(direct=0.1, neighbour=0.15 + gain + rng.normal(0, 0.02), chance_direct=0.1,
                          chance_neighbour=0.15, seconds=0.1)
            jig += [dict(block_size=8, strength=255, attack=attack, seed=0, unit=f"im{i}", images=1, metric=m, value=v,
                         source="ours") for m, v in values.items()]
    for mode, recovered in (("per-image", 0.0), ("shared", 0.95)):
        for i in range(24):
            values = dict(unseen_foreground_exact=recovered + rng.uniform(0, 0.002),
                          baseline_wrong_key_foreground=0.004 + rng.uniform(0, 0.002))
            kpa += [dict(key_mode=mode, pairs=10, block_size=8, strength=255, seed=0, unit=f"im{i}", metric=m, value=v,
                         source="ours") for m, v in values.items()]
    jig, kpa = ss.jigsaw_means(pd.DataFrame(jig)), ss.kpa_means(pd.DataFrame(kpa))
    old = ["block_size", "strength", "attack", "metric", "value", "source"]
    _write(root, "05_security", "jigsaw", jig[~jig.metric.str.endswith("above_chance")][old])
    _write(root, "05_security", "known_plaintext", kpa[kpa.metric != "foreground_above_wrong_key"]
           [["key_mode", "pairs", "block_size", "strength", "metric", "value", "source"]])
    _write(root, "05_security", "ciphertext_only_probe", [
        dict(domain="MTCE 8-px blocks", block_size=8, metric="probe_accuracy", value=0.4, n=75, ci_low=0.3, ci_high=0.5,
             source="ours"),
        dict(domain="MTCE 8-px blocks", block_size=8, metric="chance", value=0.333, source="ours")])
    if sweep:
        _write(root, "05_security", "sweep_jigsaw", jig)
        _write(root, "05_security", "sweep_known_plaintext", kpa)


@pytest.mark.parametrize("excess, verdict", [(0.1, "differs"), (0.0, "reproduced")])
def test_security_verdicts_come_from_the_sweep_s_intervals(tmp_path, excess, verdict):
    _security_results(tmp_path, excess, sweep=True)
    jigsaw, recovery, probe = claims.security(scorecard.Results(tmp_path))
    assert jigsaw.verdict == verdict and jigsaw.n == 24 and jigsaw.low <= jigsaw.ours <= jigsaw.high
    assert (jigsaw.low > 0) == (verdict == "differs")
    assert "committed attacks sweep" in jigsaw.note and jigsaw.evidence.endswith("the committed sweep")
    assert recovery.verdict == "reproduced" and recovery.n == 24 and "upper 95 % bound" in recovery.note
    assert probe.verdict == "reproduced"  # interval [0.3, 0.5] holds chance


def test_security_falls_back_to_the_chapter_s_means_without_the_sweep(tmp_path):
    _security_results(tmp_path, 0.1, sweep=False)
    jigsaw, recovery, _ = claims.security(scorecard.Results(tmp_path))
    assert jigsaw.verdict == "differs" and jigsaw.n is None and "this run" in jigsaw.note
    assert recovery.verdict == "reproduced" and recovery.low is None


def test_the_intros_short_version_is_the_headline_rows_of_the_scorecard(tmp_path):
    _table_v_results(tmp_path, paper.TABLE_V["AES"]["entropy"])
    card = scorecard.build(tmp_path, claims=[claims.table_v])
    md = scorecard.headlines_markdown(scorecard.tidy(card))
    lines = md.splitlines()
    assert lines[:2] == ["| claim | paper | ours | verdict |", "|---|---|---|---|"]
    assert len(lines) == 3 and lines[2].startswith("| Table V: AES entropy (bits) |") and "paper error" in lines[2]
    assert ", n = " in lines[2]  # ours with its interval and count
