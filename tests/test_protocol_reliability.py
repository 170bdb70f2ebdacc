"""The protocol path under faults: wrong keys, interrupted runs, parallel readers, bad inputs."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cbirlib import cli
from cbirlib.core import cipher, keys
from cbirlib.core.keys import CipherParams
from cbirlib.learning import features, models
from cbirlib.protocol import imagefiles, retrieval
from cbirlib.protocol.retrieval import CloudServer, DataOwner, QueryUser, RetrievalError

PARAMS = CipherParams(8, 255, True)


@pytest.fixture
def images_dir(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "plain"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


@pytest.fixture
def built(images_dir, tmp_path):
    owner_key, wrong_key = tmp_path / "owner.key", tmp_path / "wrong.key"
    keys.save(keys.from_seed(0, PARAMS), owner_key)
    keys.save(keys.from_seed(1, PARAMS), wrong_key)
    assert cli.main(["encrypt", str(images_dir), str(tmp_path / "enc"), "--key", str(owner_key)]) == 0
    assert cli.main(["index", str(tmp_path / "store"), "--encrypted", str(tmp_path / "enc"), "--model", "vgg16",
                     "--weights", "none", "--image-size", "32", "--chunk", "5"]) == 0
    return tmp_path, owner_key, wrong_key


def test_query_with_the_wrong_owner_key_fails_and_writes_nothing(built, images_dir, capsys):
    tmp, owner_key, wrong_key = built
    out = tmp / "found"
    rc = cli.main(["query", str(tmp / "store"), str(images_dir / "a" / "0.png"), "--owner-key", str(wrong_key),
                   "-k", "3", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc != 0 and "is not the key that encrypted it" in err and "/" in err.split("'")[1]  # names the id
    assert not out.exists()
    assert cli.main(["query", str(tmp / "store"), str(images_dir / "a" / "0.png"), "--owner-key", str(owner_key),
                     "-k", "3", "--out", str(out)]) == 0
    assert len(list(out.glob("*.png"))) == 3


def test_the_store_records_fingerprints_never_keys(built):
    tmp, owner_key, _ = built
    server = CloudServer.open(tmp / "store")
    master = keys.load(owner_key)
    assert server.fingerprints == [master.for_image(i).fingerprint() for i in server.ids]
    text = (tmp / "store" / "manifest.json").read_text()
    assert master.secret.hex() not in text and master.for_image(server.ids[0]).secret.hex() not in text


def test_decrypt_results_checks_every_key_before_decrypting():
    imgs = np.random.default_rng(1).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    owner, stranger = DataOwner(keys.from_seed(0, PARAMS)), DataOwner(keys.from_seed(9, PARAMS))
    db = owner.encrypt_database(imgs, ["x", "y", "z"])
    stranger.register(["x", "y", "z"])
    with pytest.raises(RetrievalError, match="'y' is not the key"):
        QueryUser.decrypt_results(db, owner.release_keys(["x"]) | stranger.release_keys(["y", "z"]))
    with pytest.raises(RetrievalError, match="no key released for 'z'"):
        QueryUser.decrypt_results(db, owner.release_keys(["x", "y"]))
    assert np.array_equal(QueryUser.decrypt_results(db, owner.release_keys(["x", "y", "z"])), imgs)


def test_index_refuses_an_existing_store(built):
    tmp, _, _ = built
    before = (tmp / "store" / "manifest.json").read_bytes()
    rc = cli.main(["index", str(tmp / "store"), "--encrypted", str(tmp / "enc"), "--model", "vgg16",
                   "--weights", "none", "--image-size", "32"])
    assert rc != 0 and (tmp / "store" / "manifest.json").read_bytes() == before


def _cbir(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "cbirlib.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_a_killed_index_leaves_no_store_and_a_rerun_completes(built, tmp_path):
    tmp, _, _ = built
    store = tmp_path / "store2"
    for _ in range(40):  # kill it while it builds (the temporary folder exists), not before or after
        proc = _cbir("index", str(store), "--encrypted", str(tmp / "enc"), "--model", "vgg16", "--weights", "none",
                     "--image-size", "32", "--chunk", "1", start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline and not list(tmp_path.glob(".store2.building-*")) and proc.poll() is None:
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if not store.exists():
            break
        import shutil

        shutil.rmtree(store)
    assert not store.exists(), "a killed index must leave no store"
    assert list(tmp_path.glob(".store2.building-*")), "the kill interrupted a build"
    with pytest.raises(RetrievalError, match="not a server store"):
        CloudServer.open(store)
    assert cli.main(["index", str(store), "--encrypted", str(tmp / "enc"), "--model", "vgg16", "--weights", "none",
                     "--image-size", "32"]) == 0
    assert len(CloudServer.open(store)) == 12
    assert not list(tmp_path.glob(".store2.building-*")), "the rerun cleaned the killed build's folder"


def test_parallel_queries_equal_serial(built, images_dir):
    tmp, owner_key, _ = built
    q = images_dir / "b" / "3.png"
    args = ["query", str(tmp / "store"), str(q), "--owner-key", str(owner_key), "-k", "4", "--user-key",
            str(owner_key)]

    def lines(out):  # rank, distance, id
        return [" ".join(line.split()[:3]) for line in out.splitlines() if line.strip()[:1].isdigit()]

    user_key = tmp / "user.key"
    keys.save(keys.from_seed(5, PARAMS, "image"), user_key)
    args[args.index("--user-key") + 1] = str(user_key)
    serial = subprocess.run([sys.executable, "-m", "cbirlib.cli", *args, "--out", str(tmp / "serial")],
                            capture_output=True, text=True)
    assert serial.returncode == 0, serial.stderr
    procs = [_cbir(*args, "--out", str(tmp / f"par{i}")) for i in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    assert all(lines(o[0]) == lines(serial.stdout) for o in outs)


def test_interrupted_encrypt_resumes_and_never_overwrites_inputs(images_dir, tmp_path):
    master = keys.from_seed(0, PARAMS)
    out = tmp_path / "enc"
    first = imagefiles.encrypt_path(images_dir, out, master)
    victim = out / "a" / "2.png"
    victim.unlink()  # as if the run had stopped before this file
    (out / "b" / "1.png").write_bytes(b"half-written")  # a damaged output is redone
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png") if p.name != "1.png"}
    again = imagefiles.encrypt_path(images_dir, out, master)
    assert [r.image_id for r in again] == [r.image_id for r in first]
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items()), "finished files are kept, not rewritten"
    assert victim.exists() and imagefiles.read_metadata(out / "b" / "1.png")["image_id"] == "b/1.png"
    dec = imagefiles.decrypt_path(out, tmp_path / "dec", master)
    assert len(dec) == 12 and np.array_equal(np.asarray(Image.open(tmp_path / "dec" / "a" / "2.png")),
                                             np.asarray(Image.open(images_dir / "a" / "2.png")))
    with pytest.raises(imagefiles.ImageFileError, match="inside the input folder"):
        imagefiles.encrypt_path(images_dir, images_dir / "enc", master)
    with pytest.raises(imagefiles.ImageFileError, match="inside the input folder"):
        imagefiles.encrypt_path(images_dir, images_dir, master)


@pytest.mark.parametrize("bad, match", [(None, "got NoneType"), ("key", "got str"), ([1, 2], "got int")])
def test_keys_of_the_wrong_type_are_clear_errors(bad, match):
    x = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(cipher.CipherInputError, match=match):
        cipher.encrypt(x, bad)
    with pytest.raises(cipher.CipherInputError, match=match):
        cipher.decrypt(x, bad)
    with pytest.raises((cipher.CipherInputError, keys.KeyUsageError), match="Key|key"):
        imagefiles.encrypt_path(Path("/nonexistent"), Path("/tmp/x"), bad)


def test_empty_batches_are_clear_errors():
    k = keys.from_seed(0, PARAMS, "shared")
    with pytest.raises(cipher.CipherInputError, match="empty batch"):
        cipher.encrypt(np.zeros((0, 8, 8, 3), np.uint8), k)
    with pytest.raises(cipher.CipherInputError, match="empty batch"):
        cipher.encrypt_with_ids(np.zeros((0, 8, 8, 3), np.uint8), [], keys.from_seed(0, PARAMS))
    with pytest.raises(cipher.CipherInputError, match="master key"):
        cipher.encrypt_with_ids(np.zeros((1, 8, 8, 3), np.uint8), ["a"], k)
    psi = features.FeatureModel(models.build_model("vgg16", 3, "none", 32), "pooled")
    empty = retrieval.Ciphertexts((), np.zeros((0, 32, 32, 3), np.uint8), PARAMS, (32, 32))
    with pytest.raises(RetrievalError, match="empty database"):
        CloudServer.create_from_chunks(Path("/tmp/never-created-store"), [empty], 0, psi)
    assert not Path("/tmp/never-created-store").exists()
