#!/usr/bin/env python3
"""Make one chest radiograph in every DICOM encoding a digitizer may send, each with pydicom's
decode of it as a reference, for tests/it/dicom_syntaxes.rs.

    make_syntaxes.py SOURCE.dcm OUT_DIR

The source is a real radiograph from ../shared/data/dicom (8-bit JPEG baseline, 1024x1024).
Its 2x2 pixel sums, times four, plus the two low bits of each block's first pixel, make a
512x512 12-bit image in which every bit is image content, not padding (a stored range of
0..4083), so that a decoder that drops or shifts any bit is caught.

Every encoding is made by an encoder independent of ptxd: dcmtk (dcmconv, dcmcrle, dcmcjpeg,
dcmcjpls), OpenJPEG's opj_compress (wrapped by pydicom), or pydicom itself. For each encoded
file, `NAME.values` holds pydicom's decode of it (through pylibjpeg's libjpeg and OpenJPEG
plugins), modality values as little-endian f32, and `NAME.ref.dcm` the same data set with
those pixels, uncompressed. The test wants ptxd's values to be pydicom's, sample for sample,
and the same display grey from both files.

`manifest.json` lists the files: name, transfer syntax UID, whether the encoding is lossless
(then ptxd's decode must also equal its source's), its source's values (the 12-bit image;
the 8-bit original for 8-bit extended JPEG, both as little-endian f32, written from the
arrays they were made from) and the file names.
"""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom.encaps import encapsulate
from pydicom.pixel_data_handlers.util import apply_modality_lut
from pydicom.uid import (
    generate_uid,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGExtended12Bit,
    JPEGLosslessP14,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)


def run(*argv):
    subprocess.run([str(a) for a in argv], check=True, stdout=subprocess.DEVNULL)


def source_12bit(source: Path, out: Path):
    ds = pydicom.dcmread(source)
    grey = ds.pixel_array.astype(np.uint16)
    h, w = grey.shape
    sums = grey[: h // 2 * 2 : 2, ::2][:, : w // 2] + grey[1::2, ::2][:, : w // 2]
    sums += grey[::2, 1::2][: h // 2, : w // 2] + grey[1::2, 1::2][: h // 2, : w // 2]
    # the two lowest bits from the block's first pixel: every bit of the 12 carries content
    pixels = (sums * 4 + (grey[: h // 2 * 2 : 2, : w // 2 * 2 : 2] & 3)).astype(np.uint16)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    for keyword in ("LossyImageCompression", "LossyImageCompressionRatio", "LossyImageCompressionMethod"):
        if keyword in ds:
            delattr(ds, keyword)
    write_source(ds, pixels, "OW", "ptxd syntaxes image", out)


def source_8bit(source: Path, out: Path):
    """The real radiograph as it is (8-bit), uncompressed: for 8-bit extended JPEG."""
    ds = pydicom.dcmread(source)
    pixels = ds.pixel_array.astype(np.uint8)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    write_source(ds, pixels, "OB", "ptxd syntaxes image 8-bit", out)


def write_source(ds: pydicom.Dataset, pixels: np.ndarray, vr: str, image: str, out: Path):
    """Write a source image uncompressed (explicit VR little endian) with fixed UIDs, and its
    values as little-endian f32 beside it (`.values`)."""
    # the source's SIIM identifiers are not valid UIDs (dcmtk would warn); fixed ones, so that
    # the files are the same from run to run
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["ptxd syntaxes study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["ptxd syntaxes series"])
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[image])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out.with_suffix(".values").write_bytes(pixels.astype("<f4").tobytes())
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = vr
    ds["PixelData"].is_undefined_length = False
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.save_as(out, write_like_original=False)


def ijg_values(encoded: Path, out: Path):
    """dcmtk's decode of a DCT JPEG file (dcmdjpeg: the IJG library, which libjpeg-turbo
    continues) as little-endian f32 in `out`: a second decoder for the lossy syntaxes, where
    inverse DCTs may round differently."""
    decoded = out.with_suffix(".dcm")
    run("dcmdjpeg", encoded, decoded)
    ds = pydicom.dcmread(decoded)
    out.write_bytes(apply_modality_lut(ds.pixel_array, ds).astype("<f4").tobytes())
    decoded.unlink()


def reference(encoded: Path, out: Path):
    """pydicom's decode of `encoded`: its modality values (rescale applied) as little-endian
    f32 in `NAME.values`, and the data set with those pixels written uncompressed (explicit
    VR little endian) in `out`."""
    ds = pydicom.dcmread(encoded)
    pixels = ds.pixel_array
    values = apply_modality_lut(pixels, ds).astype("<f4")
    out.with_suffix("").with_suffix(".values").write_bytes(values.tobytes())
    signed = ds.PixelRepresentation == 1
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if ds.BitsAllocated == 8:
        ds.PixelData = pixels.astype(np.uint8).tobytes()
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = pixels.astype("<i2" if signed else "<u2").tobytes()
        ds["PixelData"].VR = "OW"
    ds["PixelData"].is_undefined_length = False
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.save_as(out, write_like_original=False)


def wrap_j2k(src: Path, codestream: Path, out: Path, syntax: str):
    ds = pydicom.dcmread(src)
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate([codestream.read_bytes()])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    if syntax == JPEG2000:
        ds.LossyImageCompression = "01"
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.save_as(out, write_like_original=False)


def signed_16bit(src: Path, out: Path):
    """The source as signed samples (stored value - 2048) with a rescale intercept of 2048:
    the modality values, what ptxd windows, are the source's own."""
    ds = pydicom.dcmread(src)
    values = np.frombuffer(ds.PixelData, dtype="<u2").astype(np.int32) - 2048
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope = "2048", "1"
    ds.PixelData = values.astype("<i2").tobytes()
    ds.save_as(out, write_like_original=False)


def pgm16(src: Path, out: Path):
    """The source as a 16-bit binary PGM (big-endian samples, maxval 4095) for opj_compress."""
    src = pydicom.dcmread(src)
    pixels = np.frombuffer(src.PixelData, dtype="<u2").reshape(src.Rows, src.Columns)
    out.write_bytes(b"P5\n%d %d\n4095\n" % (src.Columns, src.Rows) + pixels.astype(">u2").tobytes())


def main():
    # the SIIM source's identifiers are not valid UIDs; they are replaced in what is written
    warnings.filterwarnings("ignore", message="Invalid value for VR UI")
    source, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    src_path = out / "source-12bit.dcm"
    source_12bit(source, src_path)
    src8_path = out / "source-8bit.dcm"
    source_8bit(source, src8_path)
    pgm16(src_path, out / "source.pgm")

    made = []

    def add(name, syntax, lossless, maker, source=src_path):
        path = out / f"{name}.dcm"
        maker(path)
        written = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
        if written != syntax:
            raise SystemExit(f"{name}: the encoder wrote {written}, not {syntax}")
        reference(path, out / f"{name}.ref.dcm")
        made.append({"name": name, "syntax": str(syntax), "lossless": lossless,
                     "source": source.with_suffix(".values").name,
                     "file": path.name, "reference": f"{name}.ref.dcm",
                     "values": f"{name}.values"})

    add("implicit-le", ImplicitVRLittleEndian, True, lambda p: run("dcmconv", "+ti", src_path, p))
    add("big-endian", ExplicitVRBigEndian, True, lambda p: run("dcmconv", "+tb", src_path, p))
    add("deflated", DeflatedExplicitVRLittleEndian, True, lambda p: run("dcmconv", "+td", src_path, p))
    add("rle", RLELossless, True, lambda p: run("dcmcrle", src_path, p))
    add("jpeg-lossless-sv1", JPEGLosslessSV1, True, lambda p: run("dcmcjpeg", "+e1", src_path, p))
    add("jpeg-lossless-p14", JPEGLosslessP14, True,
        lambda p: run("dcmcjpeg", "+el", "+sv", "6", src_path, p))
    add("jpeg-extended-12bit", JPEGExtended12Bit, False,
        lambda p: run("dcmcjpeg", "+ee", "+q", "90", src_path, p))
    add("jpeg-extended-8bit", JPEGExtended12Bit, False,
        lambda p: run("dcmcjpeg", "+ee", "+q", "90", src8_path, p), source=src8_path)
    for entry in made[-2:]:
        entry["values_ijg"] = entry["name"] + ".ijg.values"
        ijg_values(out / entry["file"], out / entry["values_ijg"])
    add("jpeg-ls-lossless", JPEGLSLossless, True, lambda p: run("dcmcjpls", "+el", src_path, p))
    add("jpeg-ls-near-lossless", JPEGLSNearLossless, False,
        lambda p: run("dcmcjpls", "+en", src_path, p))

    def j2k(p, syntax, *opts):
        codestream = out / f"{p.stem}.j2k"
        run("opj_compress", "-i", out / "source.pgm", "-o", codestream, *opts)
        wrap_j2k(src_path, codestream, p, syntax)

    add("jpeg2000-lossless", JPEG2000Lossless, True, lambda p: j2k(p, JPEG2000Lossless))
    add("jpeg2000", JPEG2000, False, lambda p: j2k(p, JPEG2000, "-I", "-r", "20"))
    add("signed-16bit", ExplicitVRLittleEndian, True, lambda p: signed_16bit(src_path, p))

    (out / "manifest.json").write_text(json.dumps({"files": made}, indent=1))


if __name__ == "__main__":
    main()
