import numpy as np
import pytest
from PIL import Image

from cbirlib import cli, imagefiles, keys
from cbirlib.keys import CipherParams, KeyUsageError


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
    with pytest.raises(imagefiles.ImageFileError, match="not a multiple of block size"):
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
