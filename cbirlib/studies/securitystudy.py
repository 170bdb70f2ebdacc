"""The security chapter's experiments: the attacks of :mod:`cbirlib.core.attacks` run on MTCE
ciphertexts of the dataset, as tidy tables, plus the privacy–utility frontier."""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import pandas as pd

from .. import results as cbresults, stats
from ..core import attacks, cipher, keys as cbkeys, knownplaintext
from ..datasets import data as cbdata
from ..learning.experimentconfig import KEY_MODES


def _keys(master: cbkeys.Key, ids: Sequence[str], key_mode: str) -> list[cbkeys.Key]:
    if key_mode not in KEY_MODES:
        raise ValueError(f"key_mode must be one of {KEY_MODES}, got {key_mode!r}")
    if key_mode == "per-image":
        return [master.for_image(i) for i in ids]
    return [master.for_group(0)] * len(ids)


def spread_over_classes(labels: np.ndarray, n: int) -> list[int]:
    """Indices of ``n`` items taken in turn from each class (classes in sorted order), evenly
    spaced within a class (its first item when one is taken): every class and the whole range of
    each class's scans, not the first ``n`` items of a split sorted by class.

    >>> spread_over_classes(np.array([0, 0, 0, 1, 1, 1, 2, 2, 2]), 6)
    [0, 3, 6, 2, 5, 8]
    """
    labels = np.asarray(labels)
    members = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    take = [0] * len(members)
    for _ in range(min(int(n), len(labels))):  # round robin over the classes that have items left
        c = min((t, i) for i, (t, m) in enumerate(zip(take, members)) if t < len(m))[1]
        take[c] += 1
    picks = [m[np.linspace(0, len(m) - 1, k).round().astype(int)] for m, k in zip(members, take)]
    return [int(p[j]) for j in range(max(take, default=0)) for p in picks if j < len(p)]


def jigsaw_images(dataset: cbdata.ImageDataset, image_size: int, block_sizes: Sequence[int], n: int
                  ) -> tuple[np.ndarray, list[str]]:
    """``n`` test images at ``image_size`` for the jigsaw, spread over the classes
    (:func:`spread_over_classes`). A block size that does not divide the image size is a clear error."""
    bad = [b for b in block_sizes if image_size % b]
    if bad:
        raise ValueError(f"image_size {image_size} is not a multiple of block sizes {bad}")
    images, labels, ids = dataset.load("test", image_size=image_size)
    pick = spread_over_classes(labels, n)
    return images[pick], [ids[i] for i in pick]


def jigsaw_one(ciphertexts: np.ndarray, plaintexts: np.ndarray, order: np.ndarray, block_size: int,
               features: str, substituted: bool, candidates: int = 4) -> dict:
    """Solve the block order of ``ciphertexts`` (n, H, W, C) that share one block order ``order``
    (n = 1 for per-image keys; n > 1 pools the evidence of n images under a shared key) and score
    it against the truth; identical plaintext blocks are interchangeable (content ids of image 0)."""
    h, w = ciphertexts.shape[1:3]
    grid = (h // block_size, w // block_size)
    t0 = time.perf_counter()
    d_lr = d_tb = 0
    for c in ciphertexts:
        lr, tb = attacks.dissimilarity(attacks.pieces(c, block_size)[0], features, substituted)
        scale = np.median(lr[np.isfinite(lr)]) + 1e-9
        d_lr, d_tb = d_lr + lr / scale, d_tb + tb / scale
    solution = attacks.solve_jigsaw(d_lr, d_tb, grid, candidates)
    seconds = time.perf_counter() - t0
    truth = attacks.true_grid(order, grid)
    content = attacks.same_content(attacks.pieces(plaintexts[0], block_size)[0])[order]
    chance = attacks.chance_scores(truth, content)
    return dict(direct=attacks.direct_comparison(solution.placement, truth, content),
                neighbour=attacks.neighbour_comparison(solution.placement, truth, content),
                chance_direct=chance[0], chance_neighbour=chance[1], seconds=seconds,
                placement=solution.placement, truth=truth)


JIGSAW_METRICS = ("direct", "neighbour", "chance_direct", "chance_neighbour", "seconds")
JIGSAW_ATTACKS = ("MTCE, per-image keys", "MTCE, shared key", "block shuffle only")


def jigsaw_trials(images: np.ndarray, ids: Sequence[str], block_sizes: Sequence[int], strengths: Sequence[int],
                  seed: int = 0, shared_images: int = 4, candidates: int = 4) -> tuple[pd.DataFrame, dict]:
    """The jigsaw attack on every image (or group of images), one tidy row per trial and metric:
    the direct and neighbour comparison of the solved placement, the same scores of a random
    placement (``chance_*``) and the solver's seconds.

    Attacks: ``MTCE, per-image keys`` (one ciphertext, order-free block statistics — what survives
    step 1), ``MTCE, shared key`` (the same, pooling the ciphertexts of ``shared_images`` images
    that share one key: consecutive groups of ``images``, each group its own key, at least one
    group), and ``block shuffle only`` (steps 2–3 without step 1, edge features: what step 1
    protects against). ``candidates``: the solver's budget, candidate relations kept per piece and
    direction. A trial's ``unit`` is the image id (or the group); ``images`` how many ciphertexts
    it pooled. Returns (trials, examples): examples[(block_size, strength, attack)] = the first
    trial's solution with its ciphertext and plaintext.
    """
    k = max(1, len(images) // shared_images)
    groups = [slice(g * shared_images, (g + 1) * shared_images) for g in range(k)]
    rows, examples = [], {}
    for b in block_sizes:
        for s in strengths:
            params = cbkeys.CipherParams(block_size=int(b), strength=int(s))
            master = cbkeys.experiment_key(seed, "owner", params)
            sched = cipher.expand(_keys(master, ids, "per-image"), images.shape[1:])
            enc = cipher.apply_schedule(images, sched)
            no_step1 = _block_shuffle_only(images, sched, b)
            shared = []
            for g, sl in enumerate(groups):
                gs = cipher.expand([master.for_group(g)], images.shape[1:])
                shared.append((cipher.apply_schedule(images[sl], gs), images[sl], gs.order[0], "stats",
                               f"group {g}"))
            runs = {"MTCE, per-image keys": [(enc[i:i + 1], images[i:i + 1], sched.order[i], "stats", ids[i])
                                             for i in range(len(images))],
                    "MTCE, shared key": shared,
                    "block shuffle only": [(no_step1[i:i + 1], images[i:i + 1], sched.order[i], "edges", ids[i])
                                           for i in range(len(images))]}
            for attack, jobs in runs.items():
                for j, (c, p, o, f, unit) in enumerate(jobs):
                    r = jigsaw_one(c, p, o, b, f, s > 0, candidates)
                    if j == 0:
                        examples[(b, s, attack)] = r | dict(ciphertext=c[0], plaintext=p[0])
                    rows += [dict(block_size=int(b), strength=int(s), attack=attack, seed=seed, unit=unit,
                                  images=len(c), metric=m, value=float(r[m]), source="ours") for m in JIGSAW_METRICS]
    return pd.DataFrame(rows), examples


#: the jigsaw's paired comparisons: (metric name, score, random-placement level of the same trial)
JIGSAW_PAIRED = (("neighbour_above_chance", "neighbour", "chance_neighbour"),
                 ("direct_above_chance", "direct", "chance_direct"))


def jigsaw_means(trials: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """The jigsaw table: per block size, strength and attack (and the columns ``by``), each
    metric's mean over the trials with ``n`` and its 95 % interval, and the score above a random
    placement (paired per trial, with the signed-rank p-value); ``images`` = ciphertexts pooled
    per trial."""
    keys = ["block_size", "strength", "attack", *by]
    out = stats.trial_means(trials, keys, JIGSAW_PAIRED)
    return out.join(trials.groupby(keys, sort=False).images.max(), on=keys)


def _block_shuffle_only(images: np.ndarray, sched: cipher.Schedule, b: int) -> np.ndarray:
    """The blocks of ``images`` moved as the schedule moves them, pixels inside left in place and
    no substitution: block scrambling without MTCE's step 1."""
    blocks = cipher.to_blocks(images, b)                               # (N, K, b*b, C)
    moved = np.take_along_axis(blocks, sched.order[:, :, None, None], 1)
    return cipher.from_blocks(moved, *images.shape[1:3], b)


def reconstruction(example: dict, block_size: int, substituted: bool, features: str) -> dict[str, np.ndarray]:
    """Images for a figure: the plaintext, the ciphertext, what the attacker paints with the blocks
    at the solved positions, and the same painting at the true positions (a perfect solver)."""
    p = attacks.pieces(example["ciphertext"], block_size)[0]
    b = block_size
    if features == "edges":
        k, _, _, c = p.shape
        tiles = p.astype(np.uint8)
        paint = lambda grid: cipher.from_blocks(tiles[grid.ravel()].reshape(1, k, b * b, c), *example["ciphertext"].shape[:2], b)[0]
    else:
        view = attacks.piece_view(p, substituted)
        paint = lambda grid: np.kron(view[grid], np.ones((b, b)))
    return {"plaintext": example["plaintext"], "ciphertext": example["ciphertext"],
            "attacker's reconstruction": paint(example["placement"]), "perfect solver": paint(example["truth"])}


def reconstruction_rows(examples: dict, block_size: int) -> tuple[list[list[np.ndarray]], list[str]]:
    """Rows of uint8 images for a figure (plaintext, ciphertext, attacker's reconstruction, perfect
    solver) for every attack and strength at ``block_size``; paintings of block statistics are
    scaled to 0..255."""
    def as_uint8(v: np.ndarray) -> np.ndarray:
        return v if v.dtype == np.uint8 else np.clip(v / max(float(v.max()), 1e-9) * 255, 0, 255).astype(np.uint8)

    rows, titles = [], []
    for (b, s, attack), ex in examples.items():
        if b != block_size:
            continue
        pics = reconstruction(ex, b, s > 0, "edges" if attack == "block shuffle only" else "stats")
        rows.append([as_uint8(v) for v in pics.values()])
        titles.append(f"{attack}, s={s}")
    return rows, titles


def kpa_sentence(sweep: pd.DataFrame | None, own: pd.DataFrame | None) -> str:
    """The known-plaintext attack in one line, one canonical number per key mode: the attacks
    sweep's (every pair count on its images, with the 95 % interval and n) when committed, the
    security chapter's own run labelled as such beside it (or alone when there is no sweep)."""
    def at(table: pd.DataFrame, mode: str) -> pd.Series:
        last = int(table.pairs.max())
        rows = table[(table.pairs == last) & (table.key_mode == mode) & (table.metric == "unseen_foreground_exact")]
        return rows.iloc[0] if len(rows) else None

    parts = []
    if sweep is not None:
        last = int(sweep.pairs.max())
        size = int(sweep.image_size.iloc[0]) if "image_size" in sweep else None
        shared, per = at(sweep, "shared"), at(sweep, "per-image")
        parts.append(f"known-plaintext attack (the attacks sweep, {last} pairs, {size} px, n = {int(shared.n)} "
                     f"decryptions): a shared key lets the attacker decrypt {shared.value:.1%} "
                     f"[{shared.ci_low:.1%}, {shared.ci_high:.1%}] of unseen foreground values; per-image keys "
                     f"{per.value:.2%}")
    if own is not None:
        last = int(own.pairs.max())
        shared, per = at(own, "shared"), at(own, "per-image")
        label = "the security chapter's own run" + (" (fewer, smaller images)" if sweep is not None else "")
        parts.append(f"{label}, {last} pairs: shared {shared.value:.1%}, per-image {per.value:.2%}")
    return "; ".join(parts) if parts else "run notebooks/05_security.ipynb first for the known-plaintext numbers"


def kpa_at_most_pairs(kpa: pd.DataFrame) -> tuple[int, pd.Series]:
    """(the largest number of pairs tried, its values indexed by (key_mode, metric))."""
    last = int(kpa.pairs.max())
    return last, kpa[kpa.pairs == last].set_index(["key_mode", "metric"])["value"]


def kpa_images(dataset: cbdata.ImageDataset, image_size: int, pairs: int, test_images: int, seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The attacker's known plaintexts (``pairs`` training images in a seeded random order) and the
    unseen test images with their ids, spread over the classes (:func:`spread_over_classes`), all
    at ``image_size``."""
    train_images, _, _ = dataset.load("train", image_size=image_size)
    known = train_images[np.random.default_rng(seed).permutation(len(train_images))[:pairs]]
    test, labels, ids = dataset.load("test", image_size=image_size)
    pick = spread_over_classes(labels, test_images)
    return known, test[pick], [ids[i] for i in pick]


#: metrics of one unseen test image; the others (block order and positions recovered, seconds)
#: are of the recovered key: one per shared key, one per test image with per-image keys
KPA_IMAGE_METRICS = ("unseen_values_exact", "unseen_foreground_exact", "baseline_constant_guess",
                     "baseline_wrong_key_foreground")
#: the known-plaintext metrics a table shows (the seconds are in the committed table)
KPA_TABLE_METRICS = ("block_order", "positions", "unseen_values_exact", "unseen_foreground_exact",
                     "baseline_constant_guess", "baseline_wrong_key_foreground")
#: the known-plaintext attack's paired comparison: recovered key against an unrelated key, per image
KPA_PAIRED = (("foreground_above_wrong_key", "unseen_foreground_exact", "baseline_wrong_key_foreground"),)


def kpa_trials(train_images: np.ndarray, test_images: np.ndarray, ids: Sequence[str], block_size: int,
               strength: int, pair_counts: Sequence[int], seed: int = 0) -> pd.DataFrame:
    """Known-plaintext attack, one tidy row per trial and metric: for each n and key mode, recover
    the schedule from the first n training pairs and decrypt ``test_images`` encrypted the same
    way. Per test image (``unit`` = its id): the share of its values decrypted exactly, overall and
    on the foreground (values other than the most common, background level of the test images),
    beside two baselines that need no key (guessing the background level everywhere; decrypting
    with an unrelated key, foreground share). Per recovered key: the share of block order and of
    positions that match the test key (``unit`` = the image with per-image keys, ``shared key``
    otherwise), and the attack's seconds (``unit`` = ``attack``)."""
    params = cbkeys.CipherParams(block_size=block_size, strength=strength)
    master = cbkeys.experiment_key(seed, "owner", params)
    shape = train_images.shape[1:]
    size = int(np.prod(shape))
    common = np.bincount(test_images.ravel(), minlength=256).argmax()       # background grey level
    foreground = (test_images != common).reshape(len(test_images), -1)
    guess = cipher.expand([cbkeys.experiment_key(seed, "unrelated", params)], shape)
    rows = []

    def add(key_mode, n, unit, metric, value):
        rows.append(dict(key_mode=key_mode, pairs=int(n), block_size=block_size, strength=strength, seed=seed,
                         unit=unit, metric=metric, value=float(value), source="ours"))

    def foreground_share(hit: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return (hit & foreground).sum(1) / foreground.sum(1)

    for key_mode in KEY_MODES:
        train_keys = _keys(master, [f"train/{i}" for i in range(len(train_images))], key_mode)
        test_keys = _keys(master, list(ids), key_mode)
        c_train = cipher.apply_schedule(train_images, cipher.expand(train_keys, shape))
        truth = cipher.expand(test_keys, shape)
        c_test = cipher.apply_schedule(test_images, truth)
        wrong = foreground_share((cipher.invert_schedule(c_test, guess) == test_images).reshape(len(ids), -1))
        true_index = truth.index - np.arange(len(ids))[:, None] * size   # image-flat, as the attack recovers it
        key_units = list(ids) if key_mode == "per-image" else ["shared key"]
        for n in pair_counts:
            t0 = time.perf_counter()
            rec = knownplaintext.known_plaintext_attack(train_images[:n], c_train[:n], block_size)
            add(key_mode, n, "attack", "seconds", time.perf_counter() - t0)
            hit = (rec.decrypt(c_test) == test_images).reshape(len(ids), -1)
            per_image = dict(unseen_values_exact=hit.mean(1), unseen_foreground_exact=foreground_share(hit),
                             baseline_constant_guess=1 - foreground.mean(1), baseline_wrong_key_foreground=wrong)
            for i, unit in enumerate(ids):
                for metric in KPA_IMAGE_METRICS:
                    add(key_mode, n, unit, metric, per_image[metric][i])
            for i, unit in enumerate(key_units):
                add(key_mode, n, unit, "block_order", (rec.block_order == truth.order[i]).mean())
                add(key_mode, n, unit, "positions", (rec.index == true_index[i]).mean())
    return pd.DataFrame(rows)


def kpa_means(trials: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """The known-plaintext table: per key mode, number of pairs, block size and strength (and the
    columns ``by``), each metric's mean over its units (over seeds too) with ``n`` and the 95 %
    interval, and the recovered key's foreground share above the unrelated key's (paired per
    image, signed-rank p-value)."""
    return stats.trial_means(trials, ["key_mode", "pairs", "block_size", "strength", *by], KPA_PAIRED)


def kpa_example(train_images: np.ndarray, test_image: np.ndarray, test_id: str, block_size: int, strength: int,
                n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """One unseen image decrypted by the key recovered from n pairs, per key mode."""
    params = cbkeys.CipherParams(block_size=block_size, strength=strength)
    master = cbkeys.experiment_key(seed, "owner", params)
    shape = train_images.shape[1:]
    out = {"plaintext": test_image}
    for key_mode in KEY_MODES:
        train_keys = _keys(master, [f"train/{i}" for i in range(n)], key_mode)
        c_train = cipher.apply_schedule(train_images[:n], cipher.expand(train_keys, shape))
        rec = knownplaintext.known_plaintext_attack(train_images[:n], c_train, block_size)
        c_test = cipher.apply_schedule(test_image[None], cipher.expand(_keys(master, [test_id], key_mode), shape))
        out[f"ciphertext ({key_mode})"] = c_test[0]
        out[f"recovered from {n} pairs ({key_mode})"] = rec.decrypt(c_test)[0]
    return out


def probe_table(train: tuple[np.ndarray, np.ndarray, Sequence[str]], test: tuple[np.ndarray, np.ndarray, Sequence[str]],
                block_sizes: Sequence[int], strength: int, seed: int = 0) -> pd.DataFrame:
    """Ciphertext-only linear probe: accuracy of predicting the class from
    :func:`attacks.ciphertext_statistics` of per-image-key ciphertexts, per block size, beside the
    same probe on plaintext statistics and the majority-class rate (chance); the accuracy rows carry
    the test count ``n`` and the Wilson 95 % interval (``ci_low``, ``ci_high``)."""
    rows = []
    (xtr, ytr, idtr), (xte, yte, idte) = train, test
    chance = float(np.bincount(yte).max() / len(yte))
    for b in ["plaintext", *block_sizes]:
        if b == "plaintext":
            ftr, fte = attacks.ciphertext_statistics(xtr, 8), attacks.ciphertext_statistics(xte, 8)
        else:
            master = cbkeys.experiment_key(seed, "owner", cbkeys.CipherParams(block_size=int(b), strength=strength))
            etr = cipher.encrypt_with_ids(xtr, list(idtr), master)
            ete = cipher.encrypt_with_ids(xte, list(idte), master)
            stat_b = max(int(b), 4)                      # block statistics on 4-px windows below 4 px
            ftr, fte = attacks.ciphertext_statistics(etr, stat_b), attacks.ciphertext_statistics(ete, stat_b)
        acc = attacks.linear_probe(ftr, ytr, fte, yte, seed)
        low, high = stats.wilson(round(acc * len(yte)), len(yte))
        rows += [dict(domain="plaintext" if b == "plaintext" else f"MTCE {b}-px blocks", block_size=b if b != "plaintext" else 0,
                      metric="probe_accuracy", value=acc, source="ours", n=len(yte), ci_low=low, ci_high=high),
                 dict(domain="plaintext" if b == "plaintext" else f"MTCE {b}-px blocks", block_size=b if b != "plaintext" else 0,
                      metric="chance", value=chance, source="ours")]
    return pd.DataFrame(rows)


def frontier(classification: pd.DataFrame | None, jigsaw: pd.DataFrame, probe: pd.DataFrame,
             strength: int) -> pd.DataFrame:
    """One row per (probed block size, model): classification accuracy with per-image keys (from
    the classification chapter's table, if given) beside the attacks' success at that block size:
    the ciphertext-only probe's accuracy and, where the jigsaw ran at that size, its neighbour
    comparison and the random-placement level."""
    rows = []
    jig = jigsaw[(jigsaw.strength == strength) & (jigsaw.attack == "MTCE, per-image keys")]
    for b in sorted(set(probe.block_size[probe.block_size > 0])):
        j = jig[jig.block_size == b].set_index("metric")["value"]
        p = probe[(probe.block_size == b) & (probe.metric == "probe_accuracy")]["value"]
        accs = {}
        if classification is not None:
            c = classification[(classification.source == "ours") & (classification["class"] == "all") &
                               (classification.metric == "accuracy") &
                               (classification.domain == f"MTCE {b}-px blocks")]
            accs = dict(zip(c.model, c.value))
        for model in (accs or {"—": np.nan}):
            rows.append(dict(block_size=b, model=model, accuracy=accs.get(model, np.nan),
                             jigsaw_neighbour=j.get("neighbour", np.nan),
                             jigsaw_neighbour_chance=j.get("chance_neighbour", np.nan),
                             probe_accuracy=float(p.iloc[0]) if len(p) else np.nan, source="ours"))
    return pd.DataFrame(rows)


def accuracy_source(parameters: dict | None) -> str:
    """Where the frontier's accuracies come from, for its axis: the classification chapter's live
    run, with its profile, training and image size (other numbers of the same accuracy, from the
    sweeps, are on the classification page and the scorecard)."""
    if not parameters:
        return "classification accuracy"
    how = "frozen trunk + linear head" if parameters.get("trainable") == "head" else "fine-tuned"
    return (f"accuracy, classification chapter's live run ({parameters.get('profile', '?')}: {how}, "
            f"{parameters.get('image_size', '?')} px, slab split)")


def findings(jigsaw: pd.DataFrame, kpa: pd.DataFrame, probe: pd.DataFrame, strength: int) -> list[str]:
    """Plain statements of what the tables show, numbers filled in from them."""
    def jig(attack, b, metric):
        g = jigsaw[(jigsaw.attack == attack) & (jigsaw.block_size == b) & (jigsaw.strength == strength) &
                   (jigsaw.metric == metric)]
        return float(g.value.iloc[0])

    out = [jigsaw_finding(jigsaw, strength)]
    sizes = sorted(jigsaw.block_size.unique())
    shuffle = [(b, jig("block shuffle only", b, "neighbour"), jig("block shuffle only", b, "chance_neighbour"))
               for b in sizes]
    out.append("Without MTCE's step 1 (blocks moved, pixels inside left in place) the same solver keeps "
               + ", ".join(f"{v:.2f} of the true adjacencies at {b} px (chance {c:.2f})" for b, v, c in shuffle)
               + ": the in-block scrambling is what holds it back.")
    out.append(kpa_finding(kpa))
    acc = probe[probe.metric == "probe_accuracy"].set_index("domain")["value"]
    chance = float(probe[probe.metric == "chance"].value.iloc[0])
    out.append("Ciphertext only, no pair: a linear probe on simple ciphertext statistics predicts the class with "
               + ", ".join(f"{v:.3f} accuracy on {d}" for d, v in acc.items()) + f" (chance {chance:.3f}).")
    return out


def jigsaw_finding(jigsaw: pd.DataFrame, strength: int, attack: str = "MTCE, per-image keys") -> str:
    """What the jigsaw got against ``attack`` at ``strength``: its neighbour comparison above a
    random placement per block size with the 95 % interval, and where that is beyond noise."""
    g = jigsaw[(jigsaw.attack == attack) & (jigsaw.strength == strength)]
    ex = g[g.metric == "neighbour_above_chance"].sort_values("block_size")
    n = int(ex.n.max())
    above = [int(r.block_size) for r in ex.itertuples() if r.ci_low > 0]
    level = ", ".join(f"{r.value:+.3f}{cbresults.interval_text(pd.Series(r._asdict()))} at {r.block_size} px" for r in ex.itertuples())
    verdict = ("above chance beyond noise at every block size" if len(above) == len(ex) else
               "above chance beyond noise at " + ", ".join(f"{b} px" for b in above) if above
               else "not above chance beyond noise at any block size")
    pooled = int(ex.images.max()) if "images" in ex else 1
    trials = (f"{n} group{'s' if n != 1 else ''} of {pooled} images" if pooled > 1 else
              f"{n} image{'s' if n != 1 else ''}")
    setting = "" if attack == "block shuffle only" else f", strength {strength}"   # no substitution there
    return (f"Jigsaw, {attack} ({trials}{setting}): the solver keeps "
            f"{level} more true adjacencies than a random placement of the same pieces (95 % intervals) — "
            f"{verdict}.")


def kpa_finding(kpa: pd.DataFrame) -> str:
    """The known-plaintext attack at its most pairs: foreground values of unseen images decrypted
    exactly with one shared key and with per-image keys, beside an unrelated key, with intervals."""
    last = int(kpa.pairs.max())
    k = kpa[kpa.pairs == last].set_index(["key_mode", "metric"])
    def share(mode, metric, fmt=".1%"):
        r = k.loc[(mode, metric)]
        return f"{r.value:{fmt}}{cbresults.interval_text(r, fmt)}"
    n = int(k.loc[("per-image", "unseen_foreground_exact"), "n"]) if "n" in k else None
    keys = k.loc[("shared", "block_order"), "n"] if "n" in k else 1
    images = (f" over {n} unseen images" if n and keys == 1 else
              f" over {n // int(keys)} unseen images × {int(keys)} key seeds" if n else "")
    return (f"Known plaintext, {last} pairs{images}: with one shared key the recovered schedule decrypts "
            f"{share('shared', 'unseen_foreground_exact')} of the foreground values exactly (block order "
            f"{share('shared', 'block_order', '.0%')} right); with per-image keys "
            f"{share('per-image', 'unseen_foreground_exact', '.2%')}, against "
            f"{share('per-image', 'baseline_wrong_key_foreground', '.2%')} with an unrelated key (95 % intervals).")


def sweep_findings(jigsaw: pd.DataFrame, kpa: pd.DataFrame) -> list[str]:
    """What the committed attacks sweep shows, with intervals: the jigsaw against every attack at
    the largest strength it ran (the table has the others), then the known-plaintext attack."""
    strength = int(jigsaw.strength.max())
    return [jigsaw_finding(jigsaw, strength, attack) for attack in JIGSAW_ATTACKS if attack in set(jigsaw.attack)
            ] + [kpa_finding(kpa)]


def jigsaw_summary(jigsaw: pd.DataFrame, metric: str = "neighbour") -> pd.DataFrame:
    """Wide view for reading: rows (strength, attack), columns block sizes, cells
    "score (random placement)" to 3 decimals."""
    score = jigsaw[jigsaw.metric == metric].pivot_table(index=["strength", "attack"], columns="block_size",
                                                         values="value", sort=False)
    chance = jigsaw[jigsaw.metric == f"chance_{metric}"].pivot_table(index=["strength", "attack"],
                                                                      columns="block_size", values="value", sort=False)
    out = score.copy().astype(object)
    for col in score.columns:
        out[col] = [f"{s:.3f} ({c:.3f})" for s, c in zip(score[col], chance[col])]
    out.columns = [f"{b} px" for b in score.columns]
    return out
