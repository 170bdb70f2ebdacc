import hashlib

import pytest

from cbirlib.datasets import assets
from cbirlib.datasets.assets import Asset, AssetError


def _fake(tmp_path, monkeypatch, content: bytes, registry="debian") -> Asset:
    monkeypatch.setenv("CBIR_HOME", str(tmp_path))
    a = Asset("fake", registry, "fake-pkg", "1.0", None, "usr/share/fake/file.bin",
              hashlib.sha256(content).hexdigest(), "MIT", "a test file")
    monkeypatch.setitem(assets.ASSETS, "fake", a)
    return a


def test_sha256_file(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"abc")
    assert assets.sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_unknown_asset():
    with pytest.raises(AssetError, match="unknown asset"):
        assets.fetch("no-such-thing")


def test_file_placed_by_hand_is_used(tmp_path, monkeypatch):
    a = _fake(tmp_path, monkeypatch, b"payload")
    a.path().parent.mkdir(parents=True)
    a.path().write_bytes(b"payload")
    assert assets.fetch("fake") == a.path()


def test_damaged_copy_is_not_used(tmp_path, monkeypatch):
    a = _fake(tmp_path, monkeypatch, b"payload")
    a.path().parent.mkdir(parents=True)
    a.path().write_bytes(b"tampered")
    monkeypatch.setattr(assets.shutil, "which", lambda _: None)  # no apt: cannot refetch
    with pytest.raises(AssetError, match="needs Debian's apt-get"):
        assets.fetch("fake")
    assert not a.path().exists()  # the damaged copy was removed, not trusted


def test_content_change_is_refused(tmp_path, monkeypatch):
    a = _fake(tmp_path, monkeypatch, b"payload")
    src = tmp_path / "from-package.bin"
    src.write_bytes(b"something else")
    with pytest.raises(AssetError, match="refusing to use it"):
        assets._install_verified(a, src)
    assert not a.path().exists()


def test_every_asset_is_pinned():
    for a in assets.ASSETS.values():
        assert len(a.sha256) == 64 and a.licence and a.description
        if a.registry == "pypi":
            assert a.package_sha256 and len(a.package_sha256) == 64
