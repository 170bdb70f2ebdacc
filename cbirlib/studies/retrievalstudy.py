"""The retrieval chapter's runs: the three-party protocol end to end, and retrieval metrics per domain."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import paths
from ..core import cipher, keys
from ..datasets import data as cbir_data
from ..learning import models, retrievalmetrics, train
from ..learning.experimentconfig import Domain, ExperimentConfig
from ..protocol import retrieval


@dataclass
class ProtocolRun:
    domain: Domain
    owner: retrieval.DataOwner
    server: retrieval.CloudServer
    user: retrieval.QueryUser
    query_images: np.ndarray  # plaintext queries (the user's)
    query_labels: np.ndarray
    query_ids: list[str]
    encrypted_queries: retrieval.Ciphertexts
    db_images: np.ndarray  # the owner's plaintext originals, for the exactness check
    db_labels: np.ndarray
    db_ids: list[str]
    results: list[retrieval.QueryResult]
    decrypted: list[np.ndarray]  # per query: (k, H, W, C) decrypted results
    classes: list[str]
    #: the server's store when no folder was given (deleted with this object)
    scratch: tempfile.TemporaryDirectory | None = field(default=None, repr=False)


def user_key(cfg: ExperimentConfig, domain: Domain) -> keys.Key:
    """The query user's own key: a per-image key under the user's own (seeded) secret, or the
    shared key in shared mode."""
    params = keys.CipherParams(domain.block_size, cfg.strength, cfg.swap)
    return keys.experiment_key(cfg.seed, "shared" if cfg.key_mode == "shared" else "query user", params)


def run_protocol(cfg: ExperimentConfig, domain, k: int = 5, n_queries: int = 6,
                 store: str | Path | None = None, progress: bool = False) -> ProtocolRun:
    """Fig. 2, live: the owner trains Psi on its encrypted training images, encrypts the database
    (train + val) with per-image keys and uploads it with Psi; the user encrypts test images as
    queries; the server ranks; the owner releases the returned ids' keys; the user decrypts."""
    domain = Domain.parse(domain)
    if domain.block_size is None:
        raise retrieval.RetrievalError("the protocol needs an encrypted domain (a block size)")
    if cfg.key_mode != "per-image":
        raise retrieval.RetrievalError("the three-party protocol releases per-image keys: use key_mode='per-image'")
    dataset = cbir_data.open_dataset(cfg.data, seed=cfg.seed)
    fitted = train.run_domain(cfg, dataset, domain, progress=progress, keep_model=True)
    owner = retrieval.DataOwner(train.domain_key(cfg, domain))
    parts = [dataset.load(s, cfg.image_size, getattr(cfg, f"{s}_per_class")) for s in ("train", "val")]
    db_images = np.concatenate([p[0] for p in parts])
    db_labels = np.concatenate([p[1] for p in parts])
    db_ids = [i for p in parts for i in p[2]]
    database = owner.encrypt_database(db_images, db_ids)
    scratch = None if store else paths.scratch_dir("cbir-protocol-")  # removed with the returned run
    store = Path(store) if store else Path(scratch.name) / "store"
    server = retrieval.CloudServer.create(store, database, fitted.kept.feature_model)
    q_images, q_labels, q_ids = dataset.load("test", cfg.image_size, cfg.test_per_class)
    user = retrieval.QueryUser(user_key(cfg, domain))
    pick = np.linspace(0, len(q_images) - 1, min(n_queries, len(q_images))).round().astype(int)
    encrypted = user.encrypt_query(q_images[pick], "query")
    results = server.query(encrypted, k)
    decrypted = []
    for r in results:
        released = owner.release_keys(r.ids)
        decrypted.append(user.decrypt_results(server.fetch(r.ids), released))
    return ProtocolRun(domain, owner, server, user, q_images[pick], q_labels[pick], [q_ids[i] for i in pick],
                       encrypted, db_images, db_labels, db_ids, results, decrypted, dataset.classes, scratch)


def holdings(run: ProtocolRun) -> pd.DataFrame:
    """What each party holds after the run (the structural privacy claim, as a table)."""
    store_files = sorted(p.name for p in run.server.root.iterdir())
    return pd.DataFrame([
        dict(party="data owner", holds=f"master secret (fingerprint {run.owner.fingerprint}); "
             f"{len(run.db_ids)} plaintext images; key-release log of {len(run.owner.release_log)} requests"),
        dict(party="cloud server", holds=f"{len(run.server)} ciphertexts, Psi ({run.server.model.meta['architecture']}, "
             f"{run.server.model.meta['layer']} features, dim {run.server.model.dim}), index; files: "
             f"{', '.join(store_files)}; no key, no plaintext"),
        dict(party="query user", holds=f"{len(run.query_ids)} plaintext queries and its own key; "
             f"{sum(len(r.ids) for r in run.results)} released per-image keys and decrypted results"),
    ])


def exactness(run: ProtocolRun) -> bool:
    """Every decrypted result equals the owner's original, bit for bit."""
    pos = {i: n for n, i in enumerate(run.db_ids)}
    return all(np.array_equal(img, run.db_images[pos[i]])
               for r, dec in zip(run.results, run.decrypted) for i, img in zip(r.ids, dec))


def domain_scores(cfg: ExperimentConfig, domain, ks=(1, 5, 10, 100), progress: bool = False
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Retrieval metrics of test queries against the train+val database for one domain (the
    database and queries encrypted as in the protocol: per-image keys, or a shared key), plus the
    cross checks for encrypted domains: plaintext queries against the encrypted database, and
    (shared-key mode) queries under a wrong shared key. Returns (metrics, PR curve), tidy."""
    domain = Domain.parse(domain)
    dataset = cbir_data.open_dataset(cfg.data, seed=cfg.seed)
    fitted = train.run_domain(cfg, dataset, domain, progress=progress, keep_model=True)
    psi = fitted.kept.feature_model
    parts = [dataset.load(s, cfg.image_size, getattr(cfg, f"{s}_per_class")) for s in ("train", "val")]
    db_plain = np.concatenate([p[0] for p in parts])
    db_labels = np.concatenate([p[1] for p in parts])
    db_ids = [i for p in parts for i in p[2]]
    q_plain, q_labels, q_ids = dataset.load("test", cfg.image_size, cfg.test_per_class)
    checks = {}
    if domain.block_size is None:
        db, q = db_plain, q_plain
    else:
        key = train.domain_key(cfg, domain)
        db = (retrieval.DataOwner(key).encrypt_database(db_plain, db_ids).images if key.kind == "master"
              else cipher.encrypt(db_plain, key))
        q = cipher.encrypt(q_plain, user_key(cfg, domain))
        checks["plaintext queries vs encrypted database"] = q_plain
        if cfg.key_mode == "shared":
            wrong = keys.experiment_key(cfg.seed, "wrong user", key.params)
            checks["queries under a wrong shared key"] = cipher.encrypt(q_plain, wrong)
    db_feats = psi(db).numpy()
    tables, curves = [], []
    for query_set, images in {"encrypted queries" if domain.block_size else "plaintext queries": q, **checks}.items():
        s = retrievalmetrics.retrieval_metrics(psi(images).numpy(), q_labels, db_feats, db_labels, ks)
        tables.append(s.table.assign(domain=domain.name, queries=query_set))
        curves.append(s.pr_curve.assign(domain=domain.name, queries=query_set))
    meta = dict(model=cfg.model, source="ours")
    return (pd.concat(tables, ignore_index=True).assign(**meta),
            pd.concat(curves, ignore_index=True).assign(**meta))


def config_for(profile: str, model: str, **overrides) -> ExperimentConfig:
    """The classification profile's training settings (image size, trainable part, epochs, images
    per class) for the retrieval chapter, with explicit overrides."""
    from .. import profiles

    p = profiles.PROFILES["02_classification"][profile] if profile in profiles.PROFILE_NAMES else None
    if p is None:
        raise ValueError(f"unknown profile {profile!r}; choose one of {profiles.PROFILE_NAMES}")
    base = {k: p[k] for k in ("image_size", "trainable", "epochs", "batch_size", "lr", "train_per_class",
                              "val_per_class", "test_per_class")}
    chosen = base | {k: v for k, v in overrides.items() if v is not None}
    chosen["weights"] = models.resolve_weights(model, chosen.get("weights", "auto"), warn=False)
    return ExperimentConfig(model=model, profile=profile, domains=("plain",), **chosen)


def findings(metrics: pd.DataFrame) -> str:
    """Markdown conclusions with the numbers read from the metric table."""
    m = metrics[metrics.metric == "mAP"].set_index(["domain", "queries"]).value
    p10 = metrics[(metrics.metric == "precision@k") & (metrics.k == 10)].set_index(["domain", "queries"]).value
    lines = [f"- {d}, {q}: mAP {v:.3f}, precision@10 {p10[(d, q)]:.3f}" for (d, q), v in m.items()]
    return "\n".join(lines)
