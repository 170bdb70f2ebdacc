import json

import pytest

from cbirlib.core import keys
from cbirlib.core.keys import CipherParams, KeyFileError, KeyUsageError


def test_generate_uses_fresh_randomness():
    a, b = keys.generate(), keys.generate()
    assert a.secret != b.secret and len(a.secret) == 32 and not a.from_seed
    assert "secret" not in repr(a) or a.secret.hex() not in repr(a)


def test_seeded_keys_are_reproducible_and_say_so():
    a, b = keys.from_seed(1), keys.from_seed(1)
    assert a.secret == b.secret and a.from_seed
    assert keys.from_seed(2).secret != a.secret
    assert keys.from_seed(1, kind="shared").secret != a.secret


def test_per_image_keys_are_independent_of_each_other():
    m = keys.from_seed(0)
    k1, k2 = m.for_image("a.png"), m.for_image("b.png")
    assert k1.secret != k2.secret and k1.kind == "image" and k1.image_id == "a.png"
    assert m.for_image("a.png").secret == k1.secret
    with pytest.raises(KeyUsageError, match="only a master key"):
        k1.for_image("c.png")
    with pytest.raises(KeyUsageError, match="non-empty"):
        m.for_image("")


def test_key_file_round_trip(tmp_path):
    k = keys.from_seed(3, CipherParams(16, 100, False))
    p = keys.save(k, tmp_path / "k.key")
    assert oct(p.stat().st_mode)[-3:] == "600"
    assert keys.load(p) == k


@pytest.mark.parametrize("damage, match", [
    (lambda t: t[: len(t) // 2], "not a key file or truncated"),
    (lambda t: t.replace('"strength": 100', '"strength": 101'), "integrity check failed"),
    (lambda t: t.replace('"version": 2', '"version": 9'), "version 9"),
    (lambda t: json.dumps({"format": "something else"}), "not a cbirlib-mtce-key file"),
    (lambda t: "", "not a key file"),
])
def test_damaged_key_files_are_clear_errors(tmp_path, damage, match):
    p = keys.save(keys.from_seed(3, CipherParams(16, 100, False)), tmp_path / "k.key")
    p.write_text(damage(p.read_text()))
    with pytest.raises(KeyFileError, match=match):
        keys.load(p)


def test_missing_key_file(tmp_path):
    with pytest.raises(KeyFileError, match="does not exist"):
        keys.load(tmp_path / "none.key")


@pytest.mark.parametrize("kwargs", [dict(block_size=0), dict(block_size=1.5), dict(strength=256),
                                    dict(strength=-1), dict(swap="yes"), dict(block_size=True),
                                    dict(expansion=3), dict(expansion=True)])
def test_bad_params(kwargs):
    with pytest.raises(ValueError):
        CipherParams(**kwargs)


def test_bad_secret():
    with pytest.raises(KeyUsageError, match="32 bytes"):
        keys.Key(b"short")


def test_keystream_depends_on_secret_and_label():
    s = keys.from_seed(0).secret
    a = keys.keystream(s, 64, b"x")
    assert len(a) == 64 and a.tobytes() == keys.keystream(s, 64, b"x").tobytes()
    assert a.tobytes() != keys.keystream(s, 64, b"y").tobytes()
    assert keys.keystream(s, 100, b"x")[:64].tobytes() == a.tobytes()  # a prefix of the same stream


def test_experiment_keys_are_the_derivations_the_committed_results_used():
    """Each role pins the seed offset and kind that the chapters used before the roles had names
    (the committed results depend on them)."""
    p = CipherParams(8, 200, True)
    assert keys.experiment_key(5, "owner", p) == keys.from_seed(5, p)
    assert keys.experiment_key(5, "shared", p) == keys.from_seed(5, p, "shared")
    assert keys.experiment_key(5, "unrelated", p) == keys.from_seed(6, p, "shared")
    assert keys.experiment_key(5, "wrong user", p) == keys.from_seed(12, p, "shared")
    assert keys.experiment_key(5, "query user", p) == keys.from_seed(1_000_008, p).for_image("query user")
    assert keys.experiment_key(5, "fresh", p, index=3) == keys.from_seed(1008, p)
    secrets_ = {keys.experiment_key(5, r, p, index=int(r == "fresh")).secret for r in keys.EXPERIMENT_ROLES}
    assert len(secrets_) == len(keys.EXPERIMENT_ROLES)  # every role its own key
    assert all(keys.experiment_key(5, r, p, index=int(r == "fresh")).from_seed for r in keys.EXPERIMENT_ROLES)


@pytest.mark.parametrize("role, index, message", [("owner ", 0, "unknown key role"), ("fresh", 0, "index >= 1"),
                                                  ("owner", 2, "index >= 1")])
def test_experiment_key_rejects_unknown_roles_and_misplaced_indices(role, index, message):
    with pytest.raises(KeyUsageError, match=message):
        keys.experiment_key(0, role, index=index)


def test_group_keys_are_shared_keys_derived_from_the_master():
    master = keys.from_seed(3, CipherParams(4))
    g0, g1 = master.for_group(0), master.for_group(1)
    assert g0.kind == g1.kind == "shared" and g0.params == master.params and g0.from_seed
    assert g0.secret == master.for_image("shared-key").secret and g1.secret == master.for_image("shared-key/1").secret
    assert g0 != g1
    with pytest.raises(KeyUsageError, match="group"):
        master.for_group(-1)
    with pytest.raises(KeyUsageError, match="only a master"):
        g0.for_group(1)
