"""Write the fuzz targets' seed corpora into fuzz/corpus/<target>/ (not committed).

Seeds are small on purpose (libFuzzer's input length grows from the largest seed): a real
radiograph from ../shared/data shrunk to 48x48 and saved in each format and encoding the
decoder reads, the host commands, the documented frames and journal lines, and the example
configs. Usage: python fuzz/seeds.py (from the repository root).
"""
import io
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless, generate_uid

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "fuzz" / "corpus"


def put(target: str, name: str, data: bytes) -> None:
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def dicom(pixels: np.ndarray, syntax, monochrome1: bool = False, bits_stored: int = 0) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    bits = pixels.dtype.itemsize * 8
    stored = bits_stored or bits
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, stored, stored - 1, 0
    ds.WindowCenter, ds.WindowWidth = int(pixels.mean()), max(1, int(pixels.max() - pixels.min()))
    ds.PatientOrientation = ["L", "F"]
    ds.is_little_endian = True
    ds.is_implicit_VR = syntax == ImplicitVRLittleEndian
    if syntax == RLELossless:
        ds.compress(RLELossless, pixels, encoding_plugin="pydicom")
    else:
        ds.PixelData = pixels.tobytes()
    b = io.BytesIO()
    ds.save_as(b, write_like_original=False)
    return b.getvalue()


def images() -> None:
    src = Image.open(DATA / "real-dev" / "images" / sorted(p.name for p in (DATA / "real-dev" / "images").iterdir())[0])
    small = src.convert("L").resize((48, 48), Image.BILINEAR)
    a8 = np.asarray(small)
    for fmt, ext, kw in [("PNG", "png", {}), ("JPEG", "jpg", {"quality": 80}), ("TIFF", "tif", {})]:
        b = io.BytesIO()
        small.save(b, fmt, **kw)
        put("decode", f"grey8.{ext}", b.getvalue())
    b = io.BytesIO()
    Image.fromarray((a8.astype(np.uint16) * 16)).save(b, "PNG")
    put("decode", "grey16.png", b.getvalue())
    b = io.BytesIO()
    small.convert("RGB").save(b, "JPEG", quality=80)
    put("decode", "colour.jpg", b.getvalue())
    a16 = a8.astype(np.uint16) * 16
    put("decode", "explicit.dcm", dicom(a16, ExplicitVRLittleEndian))
    put("decode", "implicit-mono1.dcm", dicom(4080 - a16, ImplicitVRLittleEndian, monochrome1=True))
    put("decode", "rle.dcm", dicom(a16, RLELossless))
    put("decode", "rle8.dcm", dicom(a8.copy(), RLELossless))
    # 12 bits, each one content: the low four are the 8-bit image's
    a12 = a16 + (a8.astype(np.uint16) & 15)
    compressed(dicom(a12, ExplicitVRLittleEndian, bits_stored=12))


def compressed(explicit12: bytes) -> None:
    """The codecs written in C and C++ (libjpeg-turbo's 12-bit JPEG, CharLS's JPEG-LS) and
    jpeg-decoder's lossless JPEG, seeded with dcmtk's encodings of a 12-bit image, so that
    the fuzzer starts inside them rather than having to find a valid stream."""
    if shutil.which("dcmcjpeg") is None:
        print("seeds: no dcmtk, so no compressed DICOM seeds (./test.sh installs it)", file=sys.stderr)
        return
    encodings = {
        "jpeg-extended-12bit.dcm": ["dcmcjpeg", "+ee", "+q", "75"],
        "jpeg-lossless-sv1.dcm": ["dcmcjpeg", "+e1"],
        "jpeg-ls.dcm": ["dcmcjpls", "+el"],
    }
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source.dcm"
        source.write_bytes(explicit12)
        for name, argv in encodings.items():
            out = Path(tmp) / name
            subprocess.run([*argv, source, out], check=True)
            put("decode", name, out.read_bytes())


def texts() -> None:
    for i, c in enumerate([b"ACK 12", b"NAK 3\r", b"REPLAY 0", b"STATUS", b"TRIGGER", b"ACK 18446744073709551615"]):
        put("host_command", f"cmd{i}", c)
    # the documented frames and records: every "...*CRC" line in the docs
    lines = []
    for page in ["docs/serial-protocol.md", "docs/contract.md"]:
        lines += re.findall(r"^(\{.*\*[0-9A-F]{8})$", (ROOT / page).read_text(), re.M)
    for i, line in enumerate(lines):
        put("frame_codec", f"line{i}", line.encode())
        put("journal_line", f"line{i}", line.encode())
    for p in sorted((ROOT / "deploy").glob("*.toml")) + sorted((ROOT / "board").glob("**/*.toml")):
        put("config", p.name, p.read_bytes())


if __name__ == "__main__":
    images()
    texts()
    for d in sorted(OUT.iterdir()):
        print(f"{d.name}: {len(list(d.iterdir()))} seeds", file=sys.stderr)
