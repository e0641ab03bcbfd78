"""The published SIIM-ACR and NIH ChestX-ray14 layouts (ptx_training.public), read from
miniature trees made here the way the real ones are laid out: real JPEG-baseline DICOMs
decoded by pydicom, SIIM's RLE with its header's leading space and one row per region, NIH's
CSV with its lateral views and PNGs in a nested folder."""

import csv
from io import BytesIO

import numpy as np
import pytest
from PIL import Image

from ptx_training import data, public, real, rle

GRID = 64


def jpeg_dicom(path, sop_uid, patient_id, pixels):
    """A JPEG baseline (1.2.840.10008.1.2.4.50) MONOCHROME2 DICOM, as SIIM's are."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit, SecondaryCaptureImageStorage

    buf = BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=95)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.PatientID, ds.Modality = SecondaryCaptureImageStorage, sop_uid, patient_id, "CR"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = pixels.shape[0], pixels.shape[1], 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].is_undefined_length = True
    ds.is_little_endian, ds.is_implicit_VR = True, False
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, write_like_original=False)


def halves(dark_left=True):
    img = np.full((GRID, GRID), 200, np.uint8)
    img[:, : GRID // 2] = 30
    return img if dark_left else img[:, ::-1].copy()


@pytest.fixture
def siim_tree(tmp_path):
    root = tmp_path / "siim"
    two = np.zeros((GRID, GRID), bool)
    two[5:15, 40:50] = True
    other = np.zeros((GRID, GRID), bool)
    other[40:60, 10:14] = True
    rows = [("1.2.3.1", rle.encode(two)), ("1.2.3.1", rle.encode(other)), ("1.2.3.2", "-1"), ("1.2.3.3", "-1"), ("1.2.3.4", "-1")]
    with open(root.mkdir() or root / "train-rle.csv", "w", newline="") as f:
        f.write("ImageId, EncodedPixels\n")
        for uid, enc in rows:
            f.write(f"{uid}, {enc}\n")
    for uid, pid in (("1.2.3.1", "p-a"), ("1.2.3.2", "p-b"), ("1.2.3.3", "p-b"), ("1.2.3.4", "p-c")):
        jpeg_dicom(root / "dicom-images-train" / f"study-{uid}" / "series" / f"{uid}.dcm", uid, pid, halves())
    return root, two | other


@pytest.fixture
def nih_tree(tmp_path):
    root = tmp_path / "nih"
    # 00000001_000 is in real-labelled/ (not read twice); 00000001_009 is another film of its patient
    rows = [("00000001_000.png", "No Finding", 1, "PA"), ("00000001_009.png", "Pneumothorax", 1, "PA"),
            ("90000002_000.png", "Effusion|Pneumothorax", 90000002, "AP"), ("90000003_000.png", "Cardiomegaly", 90000003, "PA"),
            ("90000004_000.png", "Pneumothorax", 90000004, "LL"), ("90000005_000.png", "No Finding", 90000005, "AP"),
            ("90000006_000.png", "Mass", 90000006, "PA")]
    (root / "images_001" / "images").mkdir(parents=True)
    with open(root / "Data_Entry_2017.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender", "View Position",
                    "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]", ""])
        for name, labels, pid, view in rows:
            w.writerow([name, labels, 0, pid, 50, "M", view, GRID, GRID, 0.14, 0.14, ""])
            Image.fromarray(halves(dark_left=False)).save(root / "images_001" / "images" / name)
    return root


def test_siim_masks_labels_and_patients(siim_tree):
    root, truth = siim_tree
    out = public.siim(root, size=32, known={"1.2.3.2": "labelled-key"}, skip={"1.2.3.4"})
    assert out["names"] == ["1.2.3.1", "1.2.3.2", "1.2.3.3"]
    assert out["labels"].tolist() == [True, False, False]
    assert out["has_mask"].all()
    # both regions of the two-row image, in the shrunken grid
    expected = np.asarray(Image.fromarray(truth.astype(np.uint8) * 255).resize((32, 32), Image.BILINEAR)) >= 96
    assert (out["masks"][0] == expected).all()
    # the image itself, decoded from its JPEG: dark left half, bright right half
    img = out["images"][0].astype(float)
    assert img[:, :12].mean() < 60 and img[:, 20:].mean() > 170
    # 1.2.3.3 shares patient p-b with 1.2.3.2, which real-labelled/ holds: same key, same fold
    assert out["patient"] == ["p-a", "labelled-key", "labelled-key"]


def test_siim_missing_dicom_is_named(siim_tree):
    root, _ = siim_tree
    next(root.rglob("1.2.3.3.dcm")).unlink()
    with pytest.raises(SystemExit, match="1.2.3.3"):
        public.siim(root, size=32)


def test_nih_frontal_views_labels_and_negative_sampling(nih_tree):
    out = public.nih(nih_tree, size=32, skip={"90000006_000"}, negatives_per_positive=1)
    # two frontal positives (the lateral one is not read), two of the three frontal negatives
    assert sorted(n for n, y in zip(out["names"], out["labels"]) if y) == ["00000001_009", "90000002_000"]
    assert len(out["names"]) == 4 and "90000004_000" not in out["names"] and "90000006_000" not in out["names"]
    assert not out["has_mask"].any() and not out["masks"].any()
    assert set(out["source"]) == {"nih"}
    assert dict(zip(out["names"], out["patient"]))["90000002_000"] == "90000002"
    img = out["images"][0].astype(float)
    assert img[:, :12].mean() > 170 and img[:, 20:].mean() < 60


def test_nih_missing_png_is_named(nih_tree):
    next(nih_tree.rglob("90000002_000.png")).unlink()
    with pytest.raises(SystemExit, match="90000002_000.png"):
        public.nih(nih_tree, size=32)


def test_labelled_set_grows_with_the_published_sets(siim_tree, nih_tree, tmp_path, monkeypatch):
    """real.labelled() with $PTX_SIIM and $PTX_NIH: real-labelled/ first, then the published
    images it does not hold, on the same patient folds."""
    base = real.labelled(32) if (data.CACHE / "real-labelled-32.npz").exists() else None
    monkeypatch.setattr(data, "CACHE", tmp_path / "cache")
    if base is None:
        base = real.labelled(32)
    monkeypatch.setenv(public.SIIM_ENV, str(siim_tree[0]))
    monkeypatch.setenv(public.NIH_ENV, str(nih_tree))
    grown = real.labelled(32)
    n = len(base["names"])
    assert grown["names"][:n] == base["names"] and (grown["fold"][:n] == base["fold"]).all()
    added = grown["names"][n:]
    assert "1.2.3.1" in added and "90000002_000" in added and "00000001_000" not in added
    assert len(added) == 4 + 5  # every SIIM image; NIH's frontal films real-labelled/ does not hold
    # a published film of a patient real-labelled/ holds lands in that patient's fold
    assert grown["fold"][n + added.index("00000001_009")] == real.fold_of("1")
    # cached: the second read is the same
    again = real.labelled(32)
    assert again["names"] == grown["names"] and (again["labels"] == grown["labels"]).all()
