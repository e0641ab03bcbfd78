//! Decompression bombs and files that claim more than they hold: each is refused (or read
//! harmlessly) by `ptxd analyze`, and the process's peak memory is measured (GNU time's
//! maximum resident set size) and held under [`MAX_RSS_MB`], models loaded included.
//!
//! The files are made here with independent encoders: `image`'s PNG encoder, the `tiff`
//! crate, `flate2`, dicom-rs's writer.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use image::ImageEncoder;
use serde_json::Value;

use crate::common;

/// The bound from the issue: a bomb must not cost more than this, models loaded included.
const MAX_RSS_MB: u64 = 200;

const SIDE: u32 = 8000; // 64 megapixels: within the default pixel limit

fn chunk(out: &mut Vec<u8>, kind: &[u8], body: &[u8]) {
    let mut typed = kind.to_vec();
    typed.extend(body);
    out.extend((body.len() as u32).to_be_bytes());
    out.extend(&typed);
    out.extend(crc32fast::hash(&typed).to_be_bytes());
}

fn zlib(bytes: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(bytes).unwrap();
    z.finish().unwrap()
}

/// An 8-bit grey PNG of `w` x `h` zeros, compressed as far as deflate goes (about 1,000:1).
fn png_zeros(w: u32, h: u32, depth16: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let encoder = image::codecs::png::PngEncoder::new_with_quality(
        &mut out,
        image::codecs::png::CompressionType::Best,
        image::codecs::png::FilterType::NoFilter,
    );
    let (colour, bytes) = match depth16 {
        true => (image::ExtendedColorType::L16, 2),
        false => (image::ExtendedColorType::L8, 1),
    };
    let zeros = vec![0u8; (w * h) as usize * bytes];
    encoder.write_image(&zeros, w, h, colour).unwrap();
    out
}

/// A PNG whose header claims `w` x `h` and whose data is `idat` (zlib).
fn png_raw(w: u32, h: u32, extra: Option<(&[u8], Vec<u8>)>, idat: &[u8]) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    if let Some((kind, body)) = extra {
        chunk(&mut out, kind, &body);
    }
    chunk(&mut out, b"IDAT", idat);
    chunk(&mut out, b"IEND", b"");
    out
}

fn tiff_deflate_zeros(w: u32, h: u32, rgb: bool) -> Vec<u8> {
    use tiff::encoder::{colortype, Compression, DeflateLevel, TiffEncoder};
    let mut out = Cursor::new(Vec::new());
    let mut enc = TiffEncoder::new(&mut out)
        .unwrap()
        .with_compression(Compression::Deflate(DeflateLevel::Best));
    if rgb {
        let zeros = vec![0u8; (w * h * 3) as usize];
        enc.write_image::<colortype::RGB8>(w, h, &zeros).unwrap();
    } else {
        let zeros = vec![0u8; (w * h) as usize];
        enc.write_image::<colortype::Gray8>(w, h, &zeros).unwrap();
    }
    out.into_inner()
}

/// A small implicit-VR DICOM file whose Modality declares a 940 MB value: dicom-rs would
/// reserve and zero-fill that much before finding the file short (found by fuzzing).
fn dicom_declaring_a_huge_value(path: &Path) {
    let mut obj = InMemDicomObject::new_empty();
    obj.put(DataElement::new(
        tags::SOP_CLASS_UID,
        VR::UI,
        uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
    ));
    obj.put(DataElement::new(
        tags::SOP_INSTANCE_UID,
        VR::UI,
        "1.2.826.0.1.3680043.2.1143.4",
    ));
    obj.put(DataElement::new(tags::MODALITY, VR::CS, "DX"));
    let mut bytes = Vec::new();
    obj.with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::IMPLICIT_VR_LITTLE_ENDIAN))
        .unwrap()
        .write_all(&mut bytes)
        .unwrap();
    // implicit VR: tag (0008,0060), then a 4-byte length
    let header = [0x08, 0x00, 0x60, 0x00, 0x02, 0x00, 0x00, 0x00];
    let at = bytes
        .windows(8)
        .position(|w| w == header)
        .expect("the Modality element");
    bytes[at + 4..at + 8].copy_from_slice(&0x3800_0000u32.to_le_bytes());
    std::fs::write(path, bytes).unwrap();
}

/// A hand-made DICOM file's start: the 128-byte preamble, `DICM`, and a meta group of its
/// group length, the transfer syntax `syntax` (with its padding) and the bytes `extra`, all
/// counted by the group length.
fn preamble_and_meta(syntax: &[u8], extra: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0u8; 128];
    bytes.extend_from_slice(b"DICM");
    let meta_len = (8 + syntax.len() + extra.len()) as u32;
    bytes.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
    bytes.extend_from_slice(&meta_len.to_le_bytes());
    bytes.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I', syntax.len() as u8, 0]);
    bytes.extend_from_slice(syntax);
    bytes.extend_from_slice(extra);
    bytes
}

/// 194 bytes of DICOM whose data set opens with a group length (a UL) declaring 4 GB:
/// dicom-rs reserved it (4.3 GB touched; found by the long fuzz run). The meta group's own
/// length covers one more element after the transfer syntax, of an unknown VR, which is read
/// as part of the meta; a length check that ended the meta at the first element of another
/// group read the data set 4 bytes off and missed the huge length.
fn dicom_with_a_4gb_group_length(path: &Path) {
    // implicit VR little endian; in the meta, (0000,0000), VR "\0\0" (unknown), 2 reserved,
    // 4-byte length 0
    let mut bytes = preamble_and_meta(b"1.2.840.10008.1.2\0", &[0u8; 12]);
    // the data set: (0000,0000) with 0xFFFFFFF7 bytes, then 4 bytes the misaligned walk
    // took for an undefined length
    bytes.extend_from_slice(&[0, 0, 0, 0, 0xF7, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
    std::fs::write(path, bytes).unwrap();
}

/// A DICOM file whose Samples per Pixel is a UL of 2 bytes: dicom-rs reads no value from it
/// and the next header from those 2 bytes, where the next element's value becomes a 1.3 GB
/// length (found by the long fuzz run, 1.36 GB touched for 3 KB).
fn dicom_with_a_short_ul(path: &Path) {
    let mut bytes = preamble_and_meta(b"1.2.840.10008.1.2.1\0", &[]); // explicit VR little endian
                                                                      // (0028,0002) UL, 2 bytes: 1
    bytes.extend_from_slice(&[0x28, 0x00, 0x02, 0x00, b'U', b'L', 2, 0, 1, 0]);
    // (0028,0004) CS "MONOCHROME2 ": read 2 bytes early, "MO" ends a 4-byte length
    bytes.extend_from_slice(&[0x28, 0x00, 0x04, 0x00, b'C', b'S', 12, 0]);
    bytes.extend_from_slice(b"MONOCHROME2 ");
    bytes.extend_from_slice(&[0u8; 64]);
    std::fs::write(path, bytes).unwrap();
}

/// A DICOM file with an item tag outside any sequence: dicom-rs reads it as a plain element
/// (its 4 bytes a value) and then an OB declaring 805 MB, which it reserves and zero-fills;
/// a length check that entered the "item" read those 4 bytes as a header and skipped the OB
/// inside a 17 KB value (found by the long fuzz run: 3 KB, 828 MB touched).
fn dicom_with_an_item_outside_a_sequence(path: &Path) {
    let mut bytes = preamble_and_meta(b"1.2.840.10008.1.2.1\0", &[]); // explicit VR little endian
    bytes.extend_from_slice(&[0x08, 0x00, 0x60, 0x00, b'C', b'S', 2, 0, b'D', b'X']);
    // (FFFE,E000), 4 bytes: (0008,0000) to a walk that enters it
    bytes.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 4, 0, 0, 0, 0x08, 0x00, 0x00, 0x00]);
    // (0042,0011) OB of 805 MB; to the entering walk, "OB\0\0" is a length of 16,975 bytes
    bytes.extend_from_slice(&[0x42, 0x00, 0x11, 0x00, b'O', b'B', 0, 0]);
    bytes.extend_from_slice(&0x3000_0000u32.to_le_bytes());
    bytes.extend_from_slice(&[0u8; 17_000]);
    std::fs::write(path, bytes).unwrap();
}

/// A deflated DICOM file whose data set inflates to a 1 GB value of zeros, which dicom-rs
/// would read whole (a deflate bomb: 1 MB of file).
fn dicom_deflating_to_a_gigabyte(path: &Path) {
    let mut bytes = preamble_and_meta(b"1.2.840.10008.1.2.1.99", &[]);
    let mut deflate = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    deflate
        .write_all(&[0x08, 0x00, 0x60, 0x00, b'C', b'S', 2, 0, b'D', b'X'])
        .unwrap();
    deflate.write_all(&[0x42, 0x00, 0x11, 0x00, b'O', b'B', 0, 0]).unwrap();
    deflate.write_all(&(1u32 << 30).to_le_bytes()).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        deflate.write_all(&zeros).unwrap();
    }
    bytes.extend_from_slice(&deflate.finish().unwrap());
    std::fs::write(path, bytes).unwrap();
}

/// A deflated DICOM file whose data set, once inflated, declares a 940 MB value: the length
/// check must walk the inflated data set, not the compressed bytes.
fn dicom_deflated_declaring_a_huge_value(path: &Path) {
    let mut bytes = preamble_and_meta(b"1.2.840.10008.1.2.1.99", &[]);
    let mut data_set = vec![0x08, 0x00, 0x60, 0x00, b'C', b'S', 2, 0, b'D', b'X'];
    data_set.extend_from_slice(&[0x42, 0x00, 0x11, 0x00, b'O', b'B', 0, 0]);
    data_set.extend_from_slice(&0x3800_0000u32.to_le_bytes());
    data_set.extend_from_slice(&[0u8; 4096]);
    let mut deflate = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    deflate.write_all(&data_set).unwrap();
    bytes.extend_from_slice(&deflate.finish().unwrap());
    std::fs::write(path, bytes).unwrap();
}

/// A DICOM file that claims `w` x `h` 16-bit pixels and holds 100 bytes of them.
fn dicom_claiming(path: &Path, w: u16, h: u16) {
    let mut obj = common::dicom_grey_image("1.2.826.0.1.3680043.2.1143.2", w, h, 12, "MONOCHROME2");
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(vec![0u16; 50].into()),
    ));
    obj.with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
        .unwrap()
        .write_to_file(path)
        .unwrap();
}

/// A JPEG 2000 DICOM of a blank 4096x4096 frame cut into 58,081 tiles of 17x17 (1.4 MB),
/// compressed by OpenJPEG's `opj_compress`. openjp2 sets up every tile before decoding any:
/// 627 MB before the number of tiles was bounded (`decode::MAX_TILES`).
fn dicom_jpeg2000_tiled(path: &Path) {
    use dicom_core::value::{PixelFragmentSequence, Value};
    const SIDE: u16 = 4096;
    let pgm = path.with_extension("pgm");
    let mut bytes = format!("P5\n{SIDE} {SIDE}\n255\n").into_bytes();
    bytes.resize(bytes.len() + usize::from(SIDE) * usize::from(SIDE), 0);
    std::fs::write(&pgm, bytes).unwrap();
    let j2k = path.with_extension("j2k");
    // three resolutions: a 17 px tile is too small for OpenJPEG's default six
    let status = Command::new("opj_compress")
        .args(["-t", "17,17", "-n", "3", "-i"])
        .arg(&pgm)
        .arg("-o")
        .arg(&j2k)
        .stdout(Stdio::null())
        .status()
        .expect("opj_compress (Debian libopenjp2-tools; ./test.sh installs it)");
    assert!(status.success());
    let mut obj = common::dicom_grey_image("1.2.826.0.1.3680043.2.1143.3", SIDE, SIDE, 8, "MONOCHROME2");
    obj.put(DataElement::new(
        tags::BITS_ALLOCATED,
        VR::US,
        PrimitiveValue::from(8u16),
    ));
    let frame = std::fs::read(&j2k).unwrap();
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        Value::from(PixelFragmentSequence::new(Vec::<u32>::new(), vec![frame])),
    ));
    obj.with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::JPEG2000_LOSSLESS))
        .unwrap()
        .write_to_file(path)
        .unwrap();
}

/// `ptxd analyze --json FILE`: its line and the process's peak RSS in MB, as GNU time
/// measures it. Not wait4 from here: Linux carries the parent's high-water mark over the
/// exec of a spawned child, so every child would report this test's own memory.
fn analyze_measured(file: &Path) -> (Value, u64) {
    let time = Path::new("/usr/bin/time");
    assert!(
        time.is_file(),
        "GNU time is needed: apt-get install time (./test.sh does)"
    );
    let report = file.with_extension("rss");
    let out = Command::new(time)
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&report)
        .arg(env!("CARGO_BIN_EXE_ptxd"))
        .args(["analyze", "--json", "--manifest"])
        .arg(common::root().join("models/manifest.toml"))
        .arg(file)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8(out.stdout).unwrap();
    let line = out
        .lines()
        .last()
        .unwrap_or_else(|| panic!("{}: no output", file.display()));
    let kb: u64 = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("{}: no peak RSS from GNU time", file.display()));
    (serde_json::from_str(line).unwrap(), kb / 1024)
}

#[test]
fn bombs_are_refused_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let put = |name: &str, bytes: Vec<u8>| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    // (file, what it is, refused as a bomb?)
    let mut cases = vec![
        (
            put("png-8k-zeros.png", png_zeros(SIDE, SIDE, false)),
            "PNG, 8000x8000 of zeros (deflate)",
            true,
        ),
        (
            put("png-8k-zeros-16bit.png", png_zeros(SIDE, SIDE, true)),
            "PNG, 8000x8000 16-bit zeros",
            true,
        ),
        (
            put("png-8k-claimed.png", png_raw(SIDE, SIDE, None, &zlib(&[0; 100]))),
            "PNG claiming 8000x8000, holding 100 bytes",
            true,
        ),
        (
            put(
                "png-100k-claimed.png",
                png_raw(100_000, 100_000, None, &zlib(&[0; 100])),
            ),
            "PNG claiming 100000x100000 (above the pixel limit)",
            true,
        ),
        (
            put("tiff-8k-deflate.tif", tiff_deflate_zeros(SIDE, SIDE, false)),
            "TIFF, 8000x8000 grey zeros (deflate)",
            true,
        ),
        (
            put("tiff-8k-rgb-deflate.tif", tiff_deflate_zeros(SIDE, SIDE, true)),
            "TIFF, 8000x8000 colour zeros (deflate)",
            true,
        ),
    ];
    // a 64x64 image carrying a 200 MB colour profile in 200 KB: the profile is not read
    let profile = [b"icc\0\0".to_vec(), zlib(&vec![0u8; 200 << 20])].concat();
    let idat = zlib(&[0u8; 65 * 64]);
    cases.push((
        put("png-iccp-200mb.png", png_raw(64, 64, Some((b"iCCP", profile)), &idat)),
        "PNG, 64x64 with a 200 MB colour profile",
        false,
    ));
    let dcm = dir.path().join("dicom-8k-claimed.dcm");
    dicom_claiming(&dcm, SIDE as u16, SIDE as u16);
    cases.push((dcm, "DICOM claiming 8000x8000 16-bit, holding 100 bytes", true));
    let dcm = dir.path().join("dicom-940mb-value.dcm");
    dicom_declaring_a_huge_value(&dcm);
    cases.push((dcm, "DICOM declaring a 940 MB value in a few hundred bytes", true));
    let dcm = dir.path().join("dicom-4gb-group-length.dcm");
    dicom_with_a_4gb_group_length(&dcm);
    cases.push((
        dcm,
        "DICOM whose meta hides a 4 GB group length from a naive walk",
        true,
    ));
    let dcm = dir.path().join("dicom-short-ul.dcm");
    dicom_with_a_short_ul(&dcm);
    cases.push((dcm, "DICOM with a 2-byte UL hiding a 1.3 GB length", true));
    let dcm = dir.path().join("item-outside-a-sequence.dcm");
    dicom_with_an_item_outside_a_sequence(&dcm);
    cases.push((
        dcm,
        "DICOM with an item outside a sequence hiding an 805 MB value",
        true,
    ));
    let dcm = dir.path().join("deflated-1gb.dcm");
    dicom_deflating_to_a_gigabyte(&dcm);
    cases.push((dcm, "deflated DICOM inflating to a 1 GB value", true));
    let dcm = dir.path().join("deflated-940mb-value.dcm");
    dicom_deflated_declaring_a_huge_value(&dcm);
    cases.push((dcm, "deflated DICOM declaring a 940 MB value once inflated", true));
    let dcm = dir.path().join("jpeg2000-tiled.dcm");
    dicom_jpeg2000_tiled(&dcm);
    cases.push((dcm, "JPEG 2000 DICOM in 58,081 tiles", true));

    let mut table = Vec::new();
    for (file, what, bomb) in &cases {
        let size = std::fs::metadata(file).unwrap().len();
        let (line, rss) = analyze_measured(file);
        table.push(format!(
            "{what}: {size} bytes -> {} ({}), peak RSS {rss} MB",
            line["verdict"], line["error_kind"]
        ));
        assert!(rss < MAX_RSS_MB, "{what}: peak RSS {rss} MB: {line}");
        if *bomb {
            assert_eq!(line["verdict"], "not_analyzed", "{what}: {line}");
            let error = line["error"].as_str().unwrap();
            assert!(
                [
                    "decompression bomb",
                    "limit of",
                    "bytes but only",
                    "whole number",
                    "tiles"
                ]
                .iter()
                .any(|w| error.contains(w)),
                "{what}: {error}"
            );
        } else {
            assert_ne!(line["verdict"], "not_analyzed", "{what}: read, harmlessly: {line}");
        }
    }
    eprintln!("{}", table.join("\n"));
}
