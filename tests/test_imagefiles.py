import numpy as np
import pytest
from PIL import Image

from cbirlib import cli
from cbirlib.core import keys
from cbirlib.core.keys import CipherParams, KeyUsageError
from cbirlib.protocol import imagefiles


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)).save(root / "a.png")
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), "L").save(root / "sub" / "b.png")
    Image.fromarray(rng.integers(0, 256, (13, 17, 4), dtype=np.uint8), "RGBA").save(root / "c.png")
    return root


def pixels(p):
    return np.asarray(Image.open(p))


def test_folder_round_trip_with_master_key(folder, tmp_path):
    master = keys.from_seed(0, CipherParams(4, 200, True))
    enc = imagefiles.encrypt_path(folder, tmp_path / "enc", master, pad="pad")
    assert {r.image_id for r in enc} == {"a.png", "sub/b.png", "c.png"}
    assert not np.array_equal(pixels(tmp_path / "enc" / "a.png"), pixels(folder / "a.png"))
    imagefiles.decrypt_path(tmp_path / "enc", tmp_path / "dec", master)
    assert np.array_equal(pixels(tmp_path / "dec" / "a.png"), pixels(folder / "a.png"))
    assert np.array_equal(pixels(tmp_path / "dec" / "sub" / "b.png"), pixels(folder / "sub" / "b.png"))
    rgba = np.asarray(Image.open(folder / "c.png").convert("RGB"))
    assert np.array_equal(pixels(tmp_path / "dec" / "c.png"), rgba)  # alpha dropped, as documented


def test_the_server_loads_ciphertexts_without_any_key(tmp_path):
    rng = np.random.default_rng(1)
    src = tmp_path / "in"
    src.mkdir()
    for name in ("x.png", "y.png"):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(src / name)
    master = keys.from_seed(0, CipherParams(4, 255, True))
    imagefiles.encrypt_path(src, tmp_path / "enc", master)
    held = imagefiles.load_encrypted(tmp_path / "enc")
    assert held.ids == ("x.png", "y.png") and held.images.shape == (2, 16, 16, 3)
    assert len(set(held.fingerprints)) == 2  # a key per image, only its fingerprint travels
    assert not np.array_equal(held.images[0], pixels(src / "x.png"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(imagefiles.ImageFileError, match="contains no image files"):
        imagefiles.load_encrypted(tmp_path / "empty")


def test_wrong_key_and_wrong_params_are_clear_errors(folder, tmp_path):
    master = keys.from_seed(0, CipherParams(4, 200, True))
    imagefiles.encrypt_path(folder / "a.png", tmp_path / "a.png", master)
    with pytest.raises(KeyUsageError, match="wrong key"):
        imagefiles.decrypt_path(tmp_path / "a.png", tmp_path / "out.png", keys.from_seed(1, CipherParams(4, 200, True)))
    with pytest.raises(KeyUsageError, match="encrypted with"):
        imagefiles.decrypt_path(tmp_path / "a.png", tmp_path / "out.png", keys.from_seed(0, CipherParams(8, 200, True)))
    assert not (tmp_path / "out.png").exists()


def test_not_encrypted_and_size_errors(folder, tmp_path):
    master = keys.from_seed(0, CipherParams(4))
    with pytest.raises(imagefiles.ImageFileError, match="not an MTCE-encrypted PNG"):
        imagefiles.decrypt_path(folder / "a.png", tmp_path / "x.png", master)
    with pytest.raises(imagefiles.ImageFileError, match="not a multiple of the block size 4"):
        imagefiles.encrypt_path(folder / "c.png", tmp_path / "c.png", master)
    with pytest.raises(imagefiles.ImageFileError, match="does not exist"):
        imagefiles.encrypt_path(tmp_path / "nope", tmp_path / "x", master)
    (tmp_path / "bad.png").write_bytes(b"garbage")
    with pytest.raises(imagefiles.ImageFileError, match="bad.png"):
        imagefiles.encrypt_path(tmp_path / "bad.png", tmp_path / "y.png", master)


def test_cli_keygen_encrypt_decrypt(folder, tmp_path, capsys):
    key = tmp_path / "m.key"
    assert cli.main(["keygen", str(key), "--block-size", "4", "--strength", "50"]) == 0
    assert cli.main(["keygen", str(key)]) == 2  # no silent overwrite
    assert "exists" in capsys.readouterr().err
    assert cli.main(["encrypt", str(folder), str(tmp_path / "e"), "--key", str(key), "--pad"]) == 0
    assert cli.main(["decrypt", str(tmp_path / "e"), str(tmp_path / "d"), "--key", str(key)]) == 0
    assert np.array_equal(pixels(tmp_path / "d" / "a.png"), pixels(folder / "a.png"))
    key.write_text(key.read_text()[:40])
    assert cli.main(["decrypt", str(tmp_path / "e"), str(tmp_path / "d2"), "--key", str(key)]) == 2
    assert "truncated" in capsys.readouterr().err


def test_cli_index_and_query(tmp_path, capsys):
    rng = np.random.default_rng(5)
    src = tmp_path / "db"
    src.mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(src / f"{i}.png")
    key = tmp_path / "owner.key"
    assert cli.main(["keygen", str(key), "--block-size", "8", "--seed", "3"]) == 0
    assert cli.main(["encrypt", str(src), str(tmp_path / "enc"), "--key", str(key)]) == 0
    assert cli.main(["index", str(tmp_path / "store"), "--encrypted", str(tmp_path / "enc"),
                     "--model", "vgg16", "--weights", "none", "--image-size", "32"]) == 0
    assert cli.main(["query", str(tmp_path / "store"), str(src / "2.png"), "--owner-key", str(key),
                     "-k", "3", "--out", str(tmp_path / "found")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines[-3:]] == ["1", "2", "3"]
    found = sorted((tmp_path / "found").glob("*.png"))
    assert len(found) == 3
    for f in found:  # every result is decrypted bit for bit to the owner's original it names
        assert np.array_equal(pixels(f), pixels(src / (f.stem.split("_", 1)[1] + ".png")))
    assert cli.main(["query", str(tmp_path / "store"), str(src / "2.png"), "--owner-key", str(key),
                     "-k", "7", "--out", str(tmp_path / "x")]) == 2
    assert "k must be between 1 and the database size 6" in capsys.readouterr().err
