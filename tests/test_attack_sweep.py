"""The attacks at scale: trials, their means with intervals, the attacks sweep's points and
aggregate (tiny images)."""

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from cbirlib import results, stats
from cbirlib.workflow import bookjobs, sweeps
from cbirlib.studies import attacksweep, securitystudy as ss


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=40), st.integers(0, 50))
def test_spread_takes_classes_in_turn_without_repeats(labels, n):
    labels = np.array(labels)
    pick = ss.spread_over_classes(labels, n)
    assert len(pick) == min(n, len(labels)) and len(set(pick)) == len(pick)
    counts = np.bincount(labels[pick], minlength=4) if pick else np.zeros(4, int)
    available = np.bincount(labels, minlength=4)
    short = counts < available  # a class with items left has at most one fewer than any other
    assert all(counts[c] + 1 >= counts.max() for c in range(4) if short[c] and available[c])


def test_spread_covers_each_class_from_first_to_last():
    labels = np.repeat([0, 1, 2], 10)
    assert ss.spread_over_classes(labels, 3) == [0, 10, 20]
    pick = ss.spread_over_classes(labels, 6)
    assert pick == [0, 10, 20, 9, 19, 29]


def _trials(values, baseline):
    rows = []
    for i, (v, b) in enumerate(zip(values, baseline)):
        rows += [dict(g="a", seed=0, unit=f"im{i}", metric="score", value=v),
                 dict(g="a", seed=0, unit=f"im{i}", metric="chance", value=b)]
    return pd.DataFrame(rows)


def test_trial_means_give_n_intervals_and_paired_differences():
    t = _trials([0.5, 0.6, 0.7, 0.8], [0.1, 0.1, 0.2, 0.2])
    m = stats.trial_means(t, ["g"], [("above", "score", "chance")]).set_index("metric")
    assert m.loc["score", "n"] == 4 and m.loc["score", "value"] == pytest.approx(0.65)
    assert m.loc["score", "ci_low"] < 0.65 < m.loc["score", "ci_high"]
    assert m.loc["above", "value"] == pytest.approx(0.5)
    assert 0 < m.loc["above", "p_value"] <= 0.25  # four positive differences: the smallest two-sided p is 0.125
    assert np.isnan(m.loc["score", "p_value"])


def test_trial_means_clip_intervals_to_the_metric_range_and_say_no_difference():
    t = _trials([0.0, 0.0, 0.0, 0.02], [0.0, 0.0, 0.0, 0.02])
    m = stats.trial_means(t, ["g"], [("above", "score", "chance")]).set_index("metric")
    assert m.loc["score", "ci_low"] == 0.0  # a Student-t interval would go below 0
    assert m.loc["above", "p_value"] == 1.0 and m.loc["above", "value"] == 0.0
    one = stats.trial_means(_trials([0.3], [0.1]), ["g"]).set_index("metric")
    assert one.loc["score", "n"] == 1 and np.isnan(one.loc["score", "ci_low"])


def _images(n=4, size=32, seed=0):
    rng = np.random.default_rng(seed)
    base = np.kron(rng.integers(0, 256, (n, size // 8, size // 8, 3)), np.ones((1, 8, 8, 1)))
    return np.clip(base + rng.integers(0, 20, base.shape), 0, 255).astype(np.uint8)


def test_jigsaw_trials_attack_every_image_and_every_shared_key_group():
    images = _images(6)
    ids = [f"im{i}" for i in range(6)]
    trials, examples = ss.jigsaw_trials(images, ids, [8], [255], seed=0, shared_images=2)
    per_attack = trials[trials.metric == "neighbour"].groupby("attack").unit.nunique()
    assert per_attack["MTCE, per-image keys"] == 6 and per_attack["block shuffle only"] == 6
    assert per_attack["MTCE, shared key"] == 3  # three groups of two, each its own key
    assert set(trials[trials.attack == "MTCE, shared key"].images) == {2}
    means = ss.jigsaw_means(trials)
    ex = means[(means.metric == "neighbour_above_chance")].set_index("attack")
    assert list(ex.n) == [6, 3, 6] and ex.p_value.notna().all()
    assert (8, 255, "MTCE, shared key") in examples


def test_known_plaintext_trials_count_keys_and_images_apart():
    images = _images(8, 16, seed=1)
    known, test = images[:5], images[5:]
    ids = ["t0", "t1", "t2"]
    trials = ss.kpa_trials(known, test, ids, 8, 255, [1, 5], seed=0)
    means = ss.kpa_means(trials).set_index(["key_mode", "pairs", "metric"])
    assert means.loc[("shared", 5, "block_order"), "n"] == 1  # one shared key
    assert means.loc[("per-image", 5, "block_order"), "n"] == 3  # a key per test image
    assert means.loc[("shared", 5, "unseen_foreground_exact"), "n"] == 3
    assert means.loc[("shared", 5, "unseen_foreground_exact"), "value"] > 0.9  # a shared key falls
    assert means.loc[("per-image", 5, "foreground_above_wrong_key"), "ci_high"] <= 0.05


@pytest.mark.parametrize("point, match", [
    ({"attack": "brute force"}, "attack must be one of"),
    ({"attack": "jigsaw", "pairs": [1]}, "unknown point parameter"),
    ({"attack": "known-plaintext", "image_size": 30, "block_size": 8}, "not a multiple"),
])
def test_bad_attack_points_are_clear_errors(point, match):
    with pytest.raises(ValueError, match=match):
        attacksweep.check_point(point)


def test_point_ids_are_readable_and_change_with_any_parameter():
    a = attacksweep.point_id({"attack": "jigsaw", "block_size": 16})
    assert a.startswith("jigsaw-b16-s255-224px-seed0-")
    assert attacksweep.point_id({"attack": "jigsaw", "block_size": 16, "per_class": 2}) != a
    assert attacksweep.point_id({"attack": "jigsaw", "block_size": 16, "arm": "renamed"}) == a


def test_attack_points_run_and_aggregate_into_tables_with_intervals(tmp_path):
    points = tmp_path / "points"
    for point in ({"attack": "jigsaw", "image_size": 32, "block_size": 8, "per_class": 2, "shared_images": 2},
                  {"attack": "known-plaintext", "image_size": 16, "block_size": 8, "pairs": [1, 2], "per_class": 1},
                  {"attack": "known-plaintext", "image_size": 16, "block_size": 8, "pairs": [1, 2], "per_class": 1,
                   "seed": 1}):
        out = attacksweep.run_point(point, points / attacksweep.point_id(point))
        rec = json.loads(out.read_text())
        assert rec["counts"]["test images"] == 3 * point["per_class"] and "experiment keys" in rec["keys"]
    tables = attacksweep.aggregate(points)
    assert set(tables) == {"points", "jigsaw", "known_plaintext"}
    kpa = tables["known_plaintext"].set_index(["key_mode", "pairs", "metric"])
    assert kpa.loc[("per-image", 2, "unseen_foreground_exact"), "n"] == 6  # 3 images x 2 key seeds
    assert kpa.loc[("shared", 2, "block_order"), "n"] == 2  # one shared key per seed
    jig = tables["jigsaw"]
    assert set(jig.image_size) == {32} and (jig[jig.metric == "neighbour"].n >= 3).all()
    view = results.interval_view(jig, ["strength", "attack"], "block_size", ["neighbour_above_chance"])
    assert list(view.columns) == ["8 px", "n"] and view.iloc[0, 0].count("[") == 1


def test_attack_sweeps_have_no_folds(tmp_path):
    (tmp_path / "bad.yaml").write_text("name: bad\nchapter: 05_security\nkind: attacks\narms:\n"
                                       "  - fixed: {attack: jigsaw}\n    grid: {fold: all}\n")
    with pytest.raises(bookjobs.WorkflowError, match="no folds"):
        sweeps.load_sweep(tmp_path / "bad.yaml")
    sweep = sweeps.load_sweep("attacks")
    assert all("fold" not in p for p in sweep.points.values())
    jig = [p for p in sweep.points.values() if p["attack"] == "jigsaw"]
    assert {p["block_size"] for p in jig} == {4, 8, 14, 16, 32} and all(p["per_class"] * 3 >= 24 for p in jig)


def test_the_known_plaintext_sentence_gives_one_canonical_number_per_key_mode():
    import pandas as pd

    from cbirlib.studies import securitystudy

    def table(shared, per, n=None):
        rows = [dict(key_mode=m, pairs=p, metric="unseen_foreground_exact", value=v * p / 10, n=n,
                     ci_low=v * p / 10 - 0.01, ci_high=v * p / 10 + 0.01, image_size=224)
                for m, v in (("shared", shared), ("per-image", per)) for p in (5, 10)]
        return pd.DataFrame(rows)

    text = securitystudy.kpa_sentence(table(0.952, 0.0, n=72), table(0.98, 0.0))
    assert text.startswith("known-plaintext attack (the attacks sweep, 10 pairs, 224 px, n = 72 decryptions)")
    assert "95.2% [94.2%, 96.2%]" in text and "the security chapter's own run (fewer, smaller images), 10 pairs: " \
        "shared 98.0%" in text
    assert securitystudy.kpa_sentence(None, table(0.98, 0.0)).startswith("the security chapter's own run, 10 pairs")
