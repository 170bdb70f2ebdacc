"""Simulated radiographs: geometry and attenuation; real radiographs: readers and letterboxing."""

import numpy as np
from PIL import Image

from cbirlib.datasets import radiographs as rg


def test_attenuation_of_air_water_bone():
    mu = rg.attenuation(np.array([-1000.0, -2048.0, 0.0, 1000.0]))
    assert mu.tolist() == [0.0, 0.0, 1.0, 2.0]


def test_drr_line_integral_and_orientation():
    mu = np.zeros((20, 30, 40), np.float32)
    mu[5:10, :, 30:] = 1.0  # a bar of water, full depth along Y, high along Z
    img = rg.drr(mu, step_mm=2.0, azimuth_deg=0.0)
    assert img.shape == (40, 20)
    expected = 30 * 2.0 * rg.MU_WATER_PER_MM
    assert np.isclose(img[0, 7], expected)  # row 0 is the top of the patient (Z high)
    assert img[39, 7] == 0.0 and img[0, 0] == 0.0
    turned = rg.drr(mu, 2.0, 90.0)
    assert turned.shape == img.shape and not np.allclose(turned, img)


def test_drr_views_equal_one_view_at_a_time():
    """Turning once per azimuth and tilting that volume gives the images of two fresh rotations."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    mu = rng.random((12, 14, 10)).astype(np.float32)
    views = rg.drr_views(mu, 2.0, (0.0, 35.0), (-10.0, 0.0, 10.0))
    assert list(views) == [(e, a) for a in (0.0, 35.0) for e in (-10.0, 0.0, 10.0)]
    for (e, a), img in views.items():
        v = ndimage.rotate(mu, a, axes=(0, 1), reshape=False, order=1, mode="constant", cval=0.0) if a else mu
        v = ndimage.rotate(v, e, axes=(1, 2), reshape=False, order=1, mode="constant", cval=0.0) if e else v
        expected = np.ascontiguousarray((v.sum(axis=1) * 2.0 * rg.MU_WATER_PER_MM).T[::-1], dtype=np.float32)
        assert img.dtype == np.float32 and np.array_equal(img, expected)
        assert np.array_equal(rg.drr(mu, 2.0, a, e), img)


def test_letterbox_keeps_aspect_and_centres():
    out = rg.letterbox(np.full((10, 40), 200, np.uint8), 32)
    assert out.shape == (32, 32)
    rows = np.flatnonzero(out.max(axis=1) > 0)
    assert 7 <= len(rows) <= 9 and rows[0] > 10  # 32 wide x 8 high, centred
    tall = rg.letterbox(np.full((10, 10), 255, np.uint8), 30, aspect=2.0)
    assert (tall.max(axis=0) > 0).sum() < 20


def test_read_radiograph_png_and_jpeg(tmp_path):
    a = np.linspace(0, 255, 64 * 48).reshape(64, 48).astype(np.uint8)
    Image.fromarray(a).save(tmp_path / "x.png")
    assert np.array_equal(rg.read_radiograph(tmp_path / "x.png"), a)
    Image.fromarray(np.stack([a] * 3, -1)).save(tmp_path / "x.jpeg", quality=95)
    g = rg.read_radiograph(tmp_path / "x.jpeg")
    assert g.shape == a.shape and np.abs(g.astype(int) - a).mean() < 3


def test_read_radiograph_dicom_monochrome1_is_inverted(tmp_path):
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = generate_uid()
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = FileDataset(str(tmp_path / "x.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
    px = np.tile(np.arange(0, 1000, 10, dtype=np.uint16), (20, 1))
    ds.Rows, ds.Columns = px.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 10, 9, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1"
    ds.PatientName = "Never^Shown"
    ds.PixelData = px.tobytes()
    ds.save_as(tmp_path / "x.dcm", enforce_file_format=True)
    g = rg.read_radiograph(tmp_path / "x.dcm")
    assert g.dtype == np.uint8 and g[0, 0] > g[0, -1]  # low stored values are bright in MONOCHROME1
    assert pydicom.dcmread(tmp_path / "x.dcm").PatientName == "Never^Shown"  # (the reader returns pixels only)
