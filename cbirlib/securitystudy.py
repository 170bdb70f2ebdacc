"""The security chapter's experiments: the attacks of :mod:`cbirlib.attacks` run on MTCE
ciphertexts of the dataset, as tidy tables, plus the privacy–utility frontier."""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import pandas as pd

from . import attacks, cipher, data as cbdata, keys as cbkeys, stats
from .train import KEY_MODES


def _keys(master: cbkeys.Key, ids: Sequence[str], key_mode: str) -> list[cbkeys.Key]:
    if key_mode not in KEY_MODES:
        raise ValueError(f"key_mode must be one of {KEY_MODES}, got {key_mode!r}")
    if key_mode == "per-image":
        return [master.for_image(i) for i in ids]
    shared = cbkeys.Key(master.for_image("shared-key").secret, master.params, "shared", None, master.from_seed)
    return [shared] * len(ids)


def jigsaw_images(dataset: cbdata.ImageDataset, image_size: int, block_sizes: Sequence[int], n: int
                  ) -> tuple[np.ndarray, list[str]]:
    """``n`` test images at ``image_size`` for the jigsaw: one per class first, then in split order.
    A block size that does not divide the image size is a clear error."""
    bad = [b for b in block_sizes if image_size % b]
    if bad:
        raise ValueError(f"image_size {image_size} is not a multiple of block sizes {bad}")
    images, labels, ids = dataset.load("test", image_size=image_size)
    first = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)]
    pick = list(dict.fromkeys(first + list(range(len(labels)))))[:n]
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


def jigsaw_table(images: np.ndarray, ids: Sequence[str], block_sizes: Sequence[int], strengths: Sequence[int],
                 seed: int = 0, shared_images: int = 4, candidates: int = 4) -> tuple[pd.DataFrame, dict]:
    """Tidy jigsaw results: for each block size, strength and attack, the mean direct and neighbour
    comparison over ``images`` and the chance level of a random placement.

    Attacks: ``MTCE, per-image keys`` (one ciphertext, order-free block statistics — what survives
    step 1), ``MTCE, shared key`` (the same, pooling ``shared_images`` ciphertexts of one key), and
    ``block shuffle only`` (steps 2–3 without step 1, edge features: what step 1 protects against).
    ``candidates``: the solver's budget, candidate relations kept per piece and direction.
    Returns (rows, examples): examples[(block_size, strength, attack)] = the first image's solution.
    """
    rows, examples = [], {}
    for b in block_sizes:
        for s in strengths:
            params = cbkeys.CipherParams(block_size=int(b), strength=int(s))
            master = cbkeys.from_seed(seed, params)
            per_image = _keys(master, ids, "per-image")
            sched = cipher.expand(per_image, images.shape[1:])
            enc = cipher.apply_schedule(images, sched)
            shared = _keys(master, ids, "shared")[0]
            shared_sched = cipher.expand([shared], images.shape[1:])
            shared_enc = cipher.apply_schedule(images, shared_sched)
            no_step1 = _block_shuffle_only(images, sched, b)
            runs = {"MTCE, per-image keys": [(enc[i:i + 1], images[i:i + 1], sched.order[i], "stats")
                                             for i in range(len(images))],
                    "MTCE, shared key": [(shared_enc[:shared_images], images[:shared_images], shared_sched.order[0],
                                          "stats")],
                    "block shuffle only": [(no_step1[i:i + 1], images[i:i + 1], sched.order[i], "edges")
                                           for i in range(len(images))]}
            for attack, jobs in runs.items():
                results = [jigsaw_one(c, p, o, b, f, s > 0, candidates) for c, p, o, f in jobs]
                examples[(b, s, attack)] = results[0] | dict(ciphertext=jobs[0][0][0], plaintext=jobs[0][1][0])
                for metric in ("direct", "neighbour", "chance_direct", "chance_neighbour", "seconds"):
                    rows.append(dict(block_size=b, strength=s, attack=attack, metric=metric,
                                     value=float(np.mean([r[metric] for r in results])), n=len(jobs[0][0]) if
                                     attack == "MTCE, shared key" else len(results), source="ours"))
    return pd.DataFrame(rows), examples


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


def kpa_at_most_pairs(kpa: pd.DataFrame) -> tuple[int, pd.Series]:
    """(the largest number of pairs tried, its values indexed by (key_mode, metric))."""
    last = int(kpa.pairs.max())
    return last, kpa[kpa.pairs == last].set_index(["key_mode", "metric"])["value"]


def kpa_images(dataset: cbdata.ImageDataset, image_size: int, pairs: int, test_images: int, seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The attacker's known plaintexts (``pairs`` training images in a seeded random order) and the
    unseen test images with their ids, all at ``image_size``."""
    train_images, _, _ = dataset.load("train", image_size=image_size)
    known = train_images[np.random.default_rng(seed).permutation(len(train_images))[:pairs]]
    test, _, ids = dataset.load("test", image_size=image_size)
    return known, test[:test_images], list(ids[:test_images])


def kpa_table(train_images: np.ndarray, test_images: np.ndarray, ids: Sequence[str], block_size: int,
              strength: int, pair_counts: Sequence[int], seed: int = 0) -> pd.DataFrame:
    """Known-plaintext attack: for each n and key mode, recover the schedule from the first n
    training pairs and decrypt ``test_images`` encrypted the same way. Metrics: share of block order,
    of positions and of substitution bytes recovered (shared key), share of unseen test values
    decrypted exactly — overall and on the foreground (values other than the most common, background
    level) — beside two baselines that need no key (guessing the background level everywhere;
    decrypting with an unrelated key, foreground share), and seconds."""
    params = cbkeys.CipherParams(block_size=block_size, strength=strength)
    master = cbkeys.from_seed(seed, params)
    shape = train_images.shape[1:]
    rows = []
    for key_mode in KEY_MODES:
        train_keys = _keys(master, [f"train/{i}" for i in range(len(train_images))], key_mode)
        test_keys = _keys(master, list(ids), key_mode)
        c_train = cipher.apply_schedule(train_images, cipher.expand(train_keys, shape))
        test_sched = cipher.expand(test_keys, shape)
        c_test = cipher.apply_schedule(test_images, test_sched)
        truth = cipher.expand(test_keys[:1], shape)
        guess = cipher.expand([cbkeys.from_seed(seed + 1, params, "shared")], shape)   # an unrelated key
        wrong_key = cipher.invert_schedule(c_test, guess)
        common = np.bincount(test_images.ravel(), minlength=256).argmax()       # background grey level
        foreground = test_images != common
        for n in pair_counts:
            t0 = time.perf_counter()
            rec = attacks.known_plaintext_attack(train_images[:n], c_train[:n], block_size)
            seconds = time.perf_counter() - t0
            decrypted = rec.decrypt(c_test)
            metrics = dict(block_order=float((rec.block_order == truth.order[0]).mean()),
                           positions=float((rec.index == truth.index[0]).mean()),
                           unseen_values_exact=float((decrypted == test_images).mean()),
                           unseen_foreground_exact=float((decrypted == test_images)[foreground].mean()),
                           baseline_constant_guess=float((~foreground).mean()),
                           baseline_wrong_key_foreground=float((wrong_key == test_images)[foreground].mean()),
                           seconds=seconds)
            for metric, value in metrics.items():
                rows.append(dict(key_mode=key_mode, pairs=n, block_size=block_size, strength=strength,
                                 metric=metric, value=value, source="ours"))
    return pd.DataFrame(rows)


def kpa_example(train_images: np.ndarray, test_image: np.ndarray, test_id: str, block_size: int, strength: int,
                n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """One unseen image decrypted by the key recovered from n pairs, per key mode."""
    params = cbkeys.CipherParams(block_size=block_size, strength=strength)
    master = cbkeys.from_seed(seed, params)
    shape = train_images.shape[1:]
    out = {"plaintext": test_image}
    for key_mode in KEY_MODES:
        train_keys = _keys(master, [f"train/{i}" for i in range(n)], key_mode)
        c_train = cipher.apply_schedule(train_images[:n], cipher.expand(train_keys, shape))
        rec = attacks.known_plaintext_attack(train_images[:n], c_train, block_size)
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
            master = cbkeys.from_seed(seed, cbkeys.CipherParams(block_size=int(b), strength=strength))
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


def findings(jigsaw: pd.DataFrame, kpa: pd.DataFrame, probe: pd.DataFrame, strength: int) -> list[str]:
    """Plain statements of what the tables show, numbers filled in from them."""
    def jig(attack, b, metric):
        g = jigsaw[(jigsaw.attack == attack) & (jigsaw.block_size == b) & (jigsaw.strength == strength) &
                   (jigsaw.metric == metric)]
        return float(g.value.iloc[0])

    out = []
    sizes = sorted(jigsaw.block_size.unique())
    mtce = [(b, jig("MTCE, per-image keys", b, "neighbour"), jig("MTCE, per-image keys", b, "chance_neighbour"))
            for b in sizes]
    out.append("Jigsaw, MTCE ciphertexts with per-image keys (strength %d): neighbour comparison %s — "
               "within %.2f of a random placement at every block size." %
               (strength, ", ".join(f"{v:.3f} at {b} px (chance {c:.3f})" for b, v, c in mtce),
                max(abs(v - c) for _, v, c in mtce)))
    shuffle = [(b, jig("block shuffle only", b, "neighbour"), jig("block shuffle only", b, "chance_neighbour"))
               for b in sizes]
    out.append("Without MTCE's step 1 (blocks moved, pixels inside left in place) the same solver keeps "
               + ", ".join(f"{v:.2f} of the true adjacencies at {b} px (chance {c:.2f})" for b, v, c in shuffle)
               + ": the in-block scrambling is what holds it back.")
    last, k = kpa_at_most_pairs(kpa)
    out.append(f"Known plaintext, {last} pairs: with one shared key the recovered schedule decrypts "
               f"{k[('shared', 'unseen_foreground_exact')]:.1%} of the foreground values of unseen images exactly "
               f"(block order {k[('shared', 'block_order')]:.0%} right); with per-image keys "
               f"{k[('per-image', 'unseen_foreground_exact')]:.2%}, the level of an unrelated key "
               f"({k[('per-image', 'baseline_wrong_key_foreground')]:.2%}).")
    acc = probe[probe.metric == "probe_accuracy"].set_index("domain")["value"]
    chance = float(probe[probe.metric == "chance"].value.iloc[0])
    out.append("Ciphertext only, no pair: a linear probe on simple ciphertext statistics predicts the class with "
               + ", ".join(f"{v:.3f} accuracy on {d}" for d, v in acc.items()) + f" (chance {chance:.3f}).")
    return out


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
