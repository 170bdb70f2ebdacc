"""Medical pixels are never silently lost: 16-bit PNGs (grey and RGB) and DICOM through `cbir
encrypt`/`decrypt` bit for bit, key files kept private, and every bad or unusual input either
round trips exactly or stops with one clear line, having written nothing."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cbirlib import cli
from cbirlib.core import keys
from cbirlib.core.keys import CipherParams
from cbirlib.datasets import assets
from cbirlib.protocol import imagereaders


def run(*args) -> int:
    return cli.main([str(a) for a in args])


@pytest.fixture
def keyfiles(tmp_path):
    k8 = keys.save(keys.from_seed(1, CipherParams(8)), tmp_path / "k8.key")
    k16 = keys.save(keys.from_seed(1, CipherParams(8, 65535, depth=16)), tmp_path / "k16.key")
    return k8, k16


def written(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_sixteen_bit_png_grey_and_rgb_round_trip_bit_for_bit(tmp_path, keyfiles):
    _, k16 = keyfiles
    rng = np.random.default_rng(0)
    ct = rng.integers(0, 4096, (48, 64, 1)).astype(np.uint16)  # a 12-bit CT slice
    rgb = rng.integers(0, 65536, (40, 32, 3)).astype(np.uint16)  # a 48-bit RGB PNG
    for name, pixels, mode in (("ct.png", ct, "L"), ("rgb.png", rgb, "RGB")):
        imagereaders.write_png(tmp_path / name, pixels, mode)
        assert run("encrypt", tmp_path / name, tmp_path / f"enc-{name}", "--key", k16) == 0
        assert run("decrypt", tmp_path / f"enc-{name}", tmp_path / f"dec-{name}", "--key", k16) == 0
        enc, dec = (imagereaders.read(tmp_path / f"{p}-{name}").pixels for p in ("enc", "dec"))
        assert dec.dtype == np.uint16 and np.array_equal(dec, pixels), name
        assert enc.dtype == np.uint16 and not np.array_equal(enc, pixels)
    assert imagereaders.read(tmp_path / "enc-ct.png").pixels.max() > 4095  # substitution spans 16 bits


def test_sixteen_bit_tiffs_grey_and_48_bit_rgb_are_read_exactly_and_round_trip(tmp_path, keyfiles):
    """Pillow holds a 16-bit grey TIFF but keeps only the high bytes of 48-bit RGB: that one is read
    with tifffile."""
    import tifffile

    _, k16 = keyfiles
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 65536, (32, 24)).astype(np.uint16)
    rgb = rng.integers(0, 65536, (24, 16, 3)).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "grey.tif")  # mode I;16
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    for name, pixels in (("grey.tif", grey[..., None]), ("rgb.tif", rgb)):
        image = imagereaders.read(tmp_path / name)
        assert image.pixels.dtype == np.uint16 and np.array_equal(image.pixels, pixels), name
        assert run("encrypt", tmp_path / name, tmp_path / f"enc-{name}.png", "--key", k16) == 0
        assert run("decrypt", tmp_path / f"enc-{name}.png", tmp_path / f"dec-{name}.png", "--key", k16) == 0
        assert np.array_equal(imagereaders.read(tmp_path / f"dec-{name}.png").pixels, pixels), name


def test_a_png_with_significant_bits_keeps_its_stored_samples(tmp_path, keyfiles):
    """A 12-bit image in a 16-bit PNG with an sBIT chunk: the stored samples go through unscaled."""
    import png

    _, k16 = keyfiles
    values = np.random.default_rng(2).integers(0, 4096, (16, 24)).astype(np.uint16)
    with open(tmp_path / "sbit.png", "wb") as f:
        png.Writer(24, 16, greyscale=True, bitdepth=12).write(f, values.tolist())  # scaled to 16 bits, sBIT = 12
    stored = np.vstack([np.asarray(r, np.uint16) for r in png.Reader(filename=str(tmp_path / "sbit.png")).read()[2]])
    assert stored.max() > 4095  # the file holds 16-bit samples
    assert np.array_equal(imagereaders.read(tmp_path / "sbit.png").pixels[..., 0], stored)
    assert run("encrypt", tmp_path / "sbit.png", tmp_path / "enc.png", "--key", k16) == 0
    assert run("decrypt", tmp_path / "enc.png", tmp_path / "dec.png", "--key", k16) == 0
    assert np.array_equal(imagereaders.read(tmp_path / "dec.png").pixels[..., 0], stored)


def test_sixteen_bit_images_and_an_eight_bit_key_stop_before_anything_is_written(tmp_path, keyfiles, capsys):
    k8, k16 = keyfiles
    imagereaders.write_png(tmp_path / "ct.png", np.full((16, 16, 1), 3000, np.uint16), "L")
    out = tmp_path / "out"
    assert run("encrypt", tmp_path / "ct.png", out / "x.png", "--key", k8) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "16-bit values and an 8-bit key" in err[0] and "--depth 16" in err[0]
    assert not out.exists()


def test_a_dicom_file_from_the_registry_round_trips_to_its_stored_values(tmp_path, keyfiles):
    pydicom = pytest.importorskip("pydicom")
    path = assets.ASSETS["xray_chest_dwv"].path() if "xray_chest_dwv" in assets.ASSETS else None
    if path is None or not path.exists():
        pytest.skip("the GDCM test radiograph is not fetched (make assets)")
    _, k16 = keyfiles
    assert run("encrypt", path, tmp_path / "cr.png", "--key", k16) == 0
    assert run("decrypt", tmp_path / "cr.png", tmp_path / "dec.png", "--key", k16) == 0
    stored = pydicom.dcmread(path).pixel_array
    assert np.array_equal(imagereaders.read(tmp_path / "dec.png").pixels[..., 0], stored)
    source = json.loads(Image.open(tmp_path / "dec.png").text["cbirlib-source"])
    assert source["format"] == "DICOM" and source["rescale_slope"] == 1.0 and source["photometric"] == "MONOCHROME1"


def _dicom(path, pixels, *, signed=False, frames=1, patient="Doe^Jane"):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.PatientName, ds.PatientID = patient, "ID-12345"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1 if signed else 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = pixels.astype(np.int16 if signed else np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_signed_dicom_values_are_shifted_and_the_shift_recorded_and_no_header_field_leaks(tmp_path, keyfiles):
    pytest.importorskip("pydicom")
    _, k16 = keyfiles
    hu = np.random.default_rng(2).integers(-1024, 3071, (32, 24)).astype(np.int16)
    path = _dicom(tmp_path / "slice.dcm", hu, signed=True)
    image = imagereaders.read(path)
    assert image.source["signed_offset"] == 2 ** 15 and image.source["rescale_intercept"] == -1024
    assert np.array_equal(image.pixels[..., 0].astype(np.int32) - 2 ** 15, hu)
    assert run("encrypt", path, tmp_path / "e.png", "--key", k16) == 0
    assert run("decrypt", tmp_path / "e.png", tmp_path / "d.png", "--key", k16) == 0
    assert np.array_equal(imagereaders.read(tmp_path / "d.png").pixels, image.pixels)
    for out in ("e.png", "d.png"):
        raw = (tmp_path / out).read_bytes()
        assert b"Doe" not in raw and b"ID-12345" not in raw


def test_a_folder_with_extensionless_dicom_files_encrypts_them_and_name_clashes_are_refused(tmp_path, keyfiles,
                                                                                            capsys):
    pytest.importorskip("pydicom")
    _, k16 = keyfiles
    scans = tmp_path / "scans"
    scans.mkdir()
    pixels = np.random.default_rng(3).integers(0, 4096, (16, 16)).astype(np.uint16)
    _dicom(scans / "IM0001", pixels)  # how many scanners name their files
    assert run("encrypt", scans, tmp_path / "enc", "--key", k16) == 0
    assert run("decrypt", tmp_path / "enc", tmp_path / "dec", "--key", k16) == 0
    assert np.array_equal(imagereaders.read(tmp_path / "dec" / "IM0001.png").pixels[..., 0], pixels)
    imagereaders.write_png(scans / "IM0001.png", pixels[..., None], "L")  # would also become IM0001.png
    capsys.readouterr()
    assert run("encrypt", scans, tmp_path / "enc2", "--key", k16) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "would both be written to IM0001.png" in err[0]
    assert not (tmp_path / "enc2").exists()


def test_multi_frame_dicom_is_refused_clearly(tmp_path, keyfiles, capsys):
    pytest.importorskip("pydicom")
    _, k16 = keyfiles
    path = _dicom(tmp_path / "cine.dcm", np.zeros((3, 16, 16)), frames=3)
    assert run("encrypt", path, tmp_path / "out.png", "--key", k16) == 2
    err = capsys.readouterr().err
    assert "multi-frame DICOM file (3 frames)" in err and "Doe" not in err and not (tmp_path / "out.png").exists()


def test_key_files_are_private_like_ssh_keys(tmp_path, keyfiles, capsys):
    k8, _ = keyfiles
    assert os.stat(k8).st_mode & 0o777 == 0o600  # save writes it readable by its owner alone
    Image.fromarray(np.zeros((16, 16), np.uint8), "L").save(tmp_path / "a.png")
    os.chmod(k8, 0o644)
    assert run("encrypt", tmp_path / "a.png", tmp_path / "e.png", "--key", k8) == 2
    assert f"chmod 600 {k8}" in capsys.readouterr().err and not (tmp_path / "e.png").exists()
    assert run("encrypt", tmp_path / "a.png", tmp_path / "e.png", "--key", k8, "--allow-shared-key-file") == 0


@pytest.mark.parametrize("args, message", [
    (["--chunk", "0"], "must be at least 1"),
    (["--chunk", "-1"], "must be at least 1"),
    (["--chunk", "two"], "expected a whole number"),
])
def test_chunk_must_be_a_positive_number(tmp_path, args, message, capsys):
    with pytest.raises(SystemExit) as e:
        run("index", tmp_path / "store", "--encrypted", tmp_path, *args)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_a_folder_is_not_encrypted_into_a_file_name_and_the_pad_hint_names_the_flag(tmp_path, keyfiles, capsys):
    k8, _ = keyfiles
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.zeros((10, 12), np.uint8), "L").save(folder / "odd.png")
    assert run("encrypt", folder, tmp_path / "out.png", "--key", k8) == 2
    assert "looks like a file name" in capsys.readouterr().err and not (tmp_path / "out.png").exists()
    assert run("encrypt", folder, tmp_path / "out", "--key", k8) == 2
    err = capsys.readouterr().err
    assert "--pad on the command line" in err and not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- fuzzing the command line

def _cases():
    rng = np.random.default_rng(7)
    out = []
    for mode in ("1", "L", "LA", "RGB", "RGBA", "P", "I;16"):
        for h, w in ((1, 1), (8, 8), (17, 5), (3, 4097)):
            out.append((f"{mode}-{h}x{w}", mode, h, w, rng))
    return out


def _make(path: Path, mode: str, h: int, w: int, rng) -> np.ndarray | None:
    """A PNG of ``mode`` and its values as the cipher should see them (None: unreadable on purpose)."""
    if mode == "I;16":
        values = rng.integers(0, 65536, (h, w, 1)).astype(np.uint16)
        imagereaders.write_png(path, values, "L")
        return values
    bands = {"1": 1, "L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "P": 1}[mode]
    base = rng.integers(0, 256, (h, w, bands), dtype=np.uint8)
    img = Image.fromarray(base[..., 0] if bands == 1 else base, "L" if bands == 1 else
                          {2: "LA", 3: "RGB", 4: "RGBA"}[bands])
    img = img.convert(mode) if mode in ("1", "P") else img
    img.save(path)
    with Image.open(path) as back:
        grey = back.mode in ("1", "L", "LA")
        arr = np.asarray(back.convert("L" if grey else "RGB"), dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


@pytest.mark.parametrize("name, mode, h, w, rng", _cases(), ids=[c[0] for c in _cases()])
def test_every_generated_image_round_trips_or_stops_with_one_clear_line(tmp_path, keyfiles, capsys, name, mode, h, w,
                                                                         rng):
    k8, k16 = keyfiles
    src = tmp_path / f"{name}.png"
    expected = _make(src, mode, h, w, rng)
    key = k16 if expected.dtype == np.uint16 else k8
    for pad in ([], ["--pad"]):
        out = tmp_path / f"enc{len(pad)}"
        rc = run("encrypt", src, out / "e.png", "--key", key, *pad)
        err = capsys.readouterr().err.strip()
        if rc != 0:  # refused: one clear line, nothing written
            assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("cbir: error: ") and not out.exists()
            assert not pad and "multiple of the block size" in err
            continue
        assert run("decrypt", out / "e.png", out / "d.png", "--key", key) == 0
        assert np.array_equal(imagereaders.read(out / "d.png").pixels, expected)


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x10\0\0\0\x10\x10\0",
                                     b"not an image at all"])
def test_empty_truncated_and_foreign_files_stop_with_one_clear_line(tmp_path, keyfiles, capsys, content):
    k8, _ = keyfiles
    (tmp_path / "bad.png").write_bytes(content)
    assert run("encrypt", tmp_path / "bad.png", tmp_path / "out" / "e.png", "--key", k8) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.png" in err[0] and not (tmp_path / "out").exists()


def test_a_truncated_sixteen_bit_png_stops_cleanly(tmp_path, keyfiles, capsys):
    _, k16 = keyfiles
    imagereaders.write_png(tmp_path / "ct.png", np.ones((32, 32, 1), np.uint16) * 999, "L")
    data = (tmp_path / "ct.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    assert run("encrypt", tmp_path / "cut.png", tmp_path / "out" / "e.png", "--key", k16) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cut.png" in err[0] and not (tmp_path / "out").exists()
