from pathlib import Path

import numpy as np
import pytest

from cbirlib.core import keys
from cbirlib.core.keys import CipherParams
from cbirlib.learning import features, indexes, models, retrievalmetrics
from cbirlib.protocol.retrieval import Ciphertexts, CloudServer, DataOwner, QueryUser, RetrievalError


@pytest.fixture(scope="module")
def psi():
    bundle = models.vgg16(weights="none", image_size=32, seed=0)
    return features.FeatureModel(bundle, "pooled")


@pytest.fixture
def world(tmp_path, psi):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    ids = [f"img{i}" for i in range(12)]
    owner = DataOwner(keys.from_seed(0, CipherParams(8)))
    server = CloudServer.create(tmp_path / "store", owner.encrypt_database(images, ids), psi)
    user = QueryUser(keys.from_seed(1, CipherParams(8)).for_image("q"))
    return owner, server, user, images, ids


def test_protocol_end_to_end_is_bit_exact(world):
    owner, server, user, images, ids = world
    results = server.query(user.encrypt_query(images[3]), k=4)
    assert len(results) == 1 and len(results[0].ids) == 4
    assert np.all(np.diff(results[0].distances) >= 0)
    released = owner.release_keys(results[0].ids)
    decrypted = user.decrypt_results(server.fetch(results[0].ids), released)
    for i, img in zip(results[0].ids, decrypted):
        assert np.array_equal(img, images[ids.index(i)])
    assert owner.release_log[-1]["ids"] == results[0].ids


def test_server_never_takes_keys_or_plaintext(world, psi, tmp_path):
    owner, server, user, images, ids = world
    with pytest.raises(TypeError, match="only Ciphertexts"):
        CloudServer.create(tmp_path / "s2", images, psi)  # a plaintext array
    with pytest.raises(TypeError, match="only Ciphertexts"):
        CloudServer.create(tmp_path / "s3", keys.from_seed(0), psi)  # a key
    with pytest.raises(TypeError, match="Ciphertexts"):
        server.query(images[:1], 3)
    # nothing in the store carries a key secret or a plaintext image
    secret = keys.from_seed(0, CipherParams(8)).secret
    blobs = b"".join(p.read_bytes() for p in server.root.iterdir())
    assert secret not in blobs and owner.release_keys([ids[0]])[ids[0]].secret not in blobs
    assert images[0].tobytes()[:64] not in blobs
    assert not any(isinstance(v, keys.Key) for v in vars(server).values())


def test_store_reopens_and_detects_damage(world):
    owner, server, user, images, ids = world
    q = user.encrypt_query(images[5])
    again = CloudServer.open(server.root)
    assert again.query(q, 3)[0].ids == server.query(q, 3)[0].ids
    (server.root / "features.npy").write_bytes((server.root / "features.npy").read_bytes()[:-8])
    with pytest.raises(RetrievalError, match="damaged"):
        CloudServer.open(server.root)
    (server.root / "manifest.json").write_text("{not json")
    with pytest.raises(RetrievalError, match="manifest.json is damaged"):
        CloudServer.open(server.root)
    with pytest.raises(RetrievalError, match="not a server store"):
        CloudServer.open(server.root / "nowhere")


def test_bad_requests(world, psi, tmp_path):
    owner, server, user, images, ids = world
    with pytest.raises(RetrievalError, match="unknown image id"):
        owner.release_keys(["nope"])
    with pytest.raises(RetrievalError, match="unknown image id"):
        server.fetch(["nope"])
    with pytest.raises(RetrievalError, match="k must be between 1 and the database size 12"):
        server.query(user.encrypt_query(images[0]), 13)
    with pytest.raises(RetrievalError, match="size and channels"):
        server.query(user.encrypt_query(images[0, :16, :16]), 2)
    with pytest.raises(RetrievalError, match="size and channels"):
        server.query(user.encrypt_query(images[0, :, :, :1]), 2)
    other = QueryUser(keys.from_seed(1, CipherParams(4)).for_image("q"))
    with pytest.raises(RetrievalError, match="encrypted with"):
        server.query(other.encrypt_query(images[0]), 2)
    res = server.query(user.encrypt_query(images[0]), 2)[0]
    wrong = owner.release_keys([res.ids[1]])
    with pytest.raises(RetrievalError, match="no key released"):
        user.decrypt_results(server.fetch(res.ids), wrong)
    swapped = {res.ids[0]: wrong[res.ids[1]], res.ids[1]: wrong[res.ids[1]]}
    with pytest.raises(RetrievalError, match="cannot decrypt"):
        user.decrypt_results(server.fetch(res.ids), swapped)
    empty = Ciphertexts((), np.zeros((0, 32, 32, 3), np.uint8), CipherParams(8), (32, 32))
    with pytest.raises(RetrievalError, match="empty database"):
        CloudServer.create(tmp_path / "empty", empty, psi)
    with pytest.raises(RetrievalError, match="master key"):
        DataOwner(keys.from_seed(0).for_image("x"))


def test_faiss_exact_matches_exact_search():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 16)).astype(np.float32)
    q = rng.normal(size=(20, 16)).astype(np.float32)
    for metric in ("euclidean", "cosine"):
        i1, d1 = indexes.ExactIndex(x, metric).search(q, 10)
        i2, d2 = indexes.FaissIndex(x, metric, exact=True).search(q, 10)
        assert np.array_equal(i1, i2)
        np.testing.assert_allclose(d1, d2, rtol=1e-4, atol=1e-4)


def test_metrics_known_values():
    # database: labels 0,0,1,1 on a line; query 0 at the first item's place
    db = np.array([[0.0], [1.0], [2.0], [3.0]])
    q = np.array([[0.0]])
    s = retrievalmetrics.retrieval_metrics(q, np.array([0]), db, np.array([0, 0, 1, 1]), ks=(1, 2, 4))
    t = s.table.set_index(["metric", "k"]).value
    assert t["precision@k", 1] == 1.0 and t["recall@k", 2] == 1.0 and t["mAP@k", 4] == 1.0
    # a bad ranking: relevant items last
    s = retrievalmetrics.retrieval_metrics(q, np.array([1]), db, np.array([0, 0, 1, 1]), ks=(2, 4, 10))
    t = s.table.set_index(["metric", "k"]).value
    assert t["precision@k", 2] == 0.0 and t["mAP@k", 2] == 0.0
    assert t["mAP@k", 4] == pytest.approx((1 / 3 + 2 / 4) / 2)
    assert s.table.query("k == 10").k_used.iloc[0] == 4  # capped at the database size


def test_query_excluded_from_its_own_ranking():
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(30, 4))
    labels = rng.integers(0, 3, 30)
    ids = [str(i) for i in range(30)]
    s = retrievalmetrics.retrieval_metrics(feats, labels, feats, labels, ks=(1,), query_ids=ids, db_ids=ids)
    assert s.extra["database"] == 30
    p1 = s.table.query("metric == 'precision@k'").value.iloc[0]
    naive = retrievalmetrics.retrieval_metrics(feats, labels, feats, labels, ks=(1,))
    assert naive.table.query("metric == 'precision@k'").value.iloc[0] == 1.0  # itself first
    assert p1 < 1.0
    with pytest.raises(RetrievalError, match="all in the database or all outside"):
        retrievalmetrics.retrieval_metrics(feats[:2], labels[:2], feats, labels, query_ids=["0", "x"], db_ids=ids)


def test_feature_model_save_load(psi, tmp_path):
    images = np.random.default_rng(3).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    path = psi.save(tmp_path / "psi.pt")
    again = features.FeatureModel.load(path)
    assert np.allclose(psi(images).numpy(), again(images).numpy(), atol=1e-5)
    path.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a readable feature model"):
        features.FeatureModel.load(path)


def test_scratch_folders_of_killed_processes_are_removed_by_the_next_one():
    import os
    import subprocess
    import sys

    from cbirlib import paths

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    root = Path(paths.scratch_dir("cbir-test-").name).parent
    orphan = root / f"{dead}.cbir-protocol-left-behind"
    (orphan / "store").mkdir(parents=True)
    mine = paths.scratch_dir("cbir-test-")
    assert not orphan.exists()  # its process is gone
    assert Path(mine.name).is_dir() and Path(mine.name).name.startswith(f"{os.getpid()}.")
    other = paths.scratch_dir("cbir-test-")
    assert Path(mine.name).is_dir()  # a live process keeps its folders
    mine.cleanup(), other.cleanup()


def test_a_scratch_folder_is_removed_with_its_owner():
    """The protocol runs keep their server's store in one; nothing is left in /tmp afterwards."""
    import gc

    from cbirlib import paths

    scratch = paths.scratch_dir("cbir-test-")
    folder = Path(scratch.name)
    (folder / "store").mkdir()
    (folder / "store" / "features.npy").write_bytes(b"0")
    del scratch
    gc.collect()
    assert not folder.exists()


def test_source_breakdown_agrees_with_retrieval_metrics_and_removes_only_the_own_source():
    rng = np.random.default_rng(0)
    q, db = rng.normal(size=(12, 5)), rng.normal(size=(40, 5))
    ql, dbl = rng.integers(0, 3, 12), rng.integers(0, 3, 40)
    full = retrievalmetrics.retrieval_metrics(q, ql, db, dbl, ks=(10,)).table
    elsewhere = retrievalmetrics.source_breakdown(q, ql, [f"q{i}" for i in range(12)], db, dbl, [f"d{i}" for i in range(40)])
    assert elsewhere["mAP"] == pytest.approx(float(full.loc[full.metric == "mAP", "value"].iloc[0]))
    assert elsewhere["share_top_k_same_source"] == 0.0
    assert elsewhere["mAP_other_sources"] == pytest.approx(elsewhere["mAP"])
    # every database image from the query's own source and of its class: nothing relevant is left elsewhere
    one = retrievalmetrics.source_breakdown(q[:1], np.array([0]), ["s"], db, np.zeros(40, int), ["s"] * 40)
    assert one["share_top_k_same_source"] == 1.0 and one["mAP_other_sources"] == 0.0
