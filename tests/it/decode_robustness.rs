//! Damaged files never crash the decoder: real DICOM, PNG, JPEG and a TIFF made from them,
//! cut short at many offsets and with bytes overwritten at many places. Each must give an
//! image or an error, and must not panic.

use crate::common;

use common::{data, REAL_PNG};
use ptxd::config::Limits;
use ptxd::pixels::decode::decode_bytes;

fn samples() -> Vec<(&'static str, Vec<u8>)> {
    let png = std::fs::read(data(REAL_PNG)).unwrap();
    let img = image::load_from_memory(&png).unwrap().to_luma8();
    let small = image::imageops::resize(&img, 128, 128, image::imageops::FilterType::Triangle);
    let mut tiff = std::io::Cursor::new(Vec::new());
    small.write_to(&mut tiff, image::ImageFormat::Tiff).unwrap();
    vec![
        ("dicom", std::fs::read(data("dicom/ID_0a920cc01.dcm")).unwrap()),
        ("png", png),
        ("jpeg", std::fs::read(data("cxr-512/ID_0011fe81e.jpg")).unwrap()),
        ("tiff", tiff.into_inner()),
    ]
}

/// A small deterministic generator, so a failure names a reproducible case.
fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

#[test]
fn damaged_files_give_errors_not_panics() {
    let limits = Limits::default();
    for (kind, bytes) in samples() {
        let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
        // cut short: densely in the header, then spread over the body
        let mut cuts: Vec<usize> = (0..bytes.len().min(600)).step_by(13).collect();
        cuts.extend((1..40).map(|i| bytes.len() * i / 40));
        for cut in cuts {
            cases.push((format!("{kind} cut at {cut}"), bytes[..cut].to_vec()));
        }
        // overwritten: runs of 1-8 random bytes at random places
        let mut rng = 0x5eed ^ bytes.len() as u64;
        for i in 0..40 {
            let mut damaged = bytes.clone();
            let at = if i < 20 {
                lcg(&mut rng) as usize % bytes.len().min(1024)
            } else {
                lcg(&mut rng) as usize % bytes.len()
            };
            let run = 1 + lcg(&mut rng) as usize % 8;
            for b in damaged.iter_mut().skip(at).take(run) {
                *b = lcg(&mut rng) as u8;
            }
            cases.push((format!("{kind} overwritten at {at} ({run} bytes, case {i})"), damaged));
        }
        for (name, case) in cases {
            let outcome = std::panic::catch_unwind(|| decode_bytes(&case, limits).map(|r| r.image.width));
            assert!(outcome.is_ok(), "{name}: the decoder panicked");
        }
    }
}

/// An RLE Lossless DICOM of 48x48 16-bit pixels whose second segment (the low bytes)
/// decodes to 128 bytes instead of 2,304: found by fuzzing (`fuzz/`, target `decode`),
/// where dicom-pixeldata 0.10 indexes out of bounds. Refused, not a crash.
#[test]
fn rle_segments_of_unequal_length_are_refused_not_a_panic() {
    use dicom_core::value::{PixelFragmentSequence, Value};
    use dicom_core::{DataElement, VR};
    use dicom_dictionary_std::{tags, uids};
    use dicom_object::FileMetaTableBuilder;

    // RLE runs: 0x81 then a byte = that byte 128 times
    let full: Vec<u8> = std::iter::repeat_n([0x81u8, 0x10], 2304 / 128).flatten().collect();
    let short = vec![0x81u8, 0x20];
    let mut frame = vec![0u8; 64];
    frame[..4].copy_from_slice(&2u32.to_le_bytes());
    frame[4..8].copy_from_slice(&64u32.to_le_bytes());
    frame[8..12].copy_from_slice(&(64 + full.len() as u32).to_le_bytes());
    frame.extend(&full);
    frame.extend(&short);
    let mut obj = common::dicom_grey_image("1.2.826.0.1.3680043.2.1143.3", 48, 48, 16, "MONOCHROME2");
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        Value::from(PixelFragmentSequence::new(Vec::<u32>::new(), vec![frame])),
    ));
    let mut bytes = Vec::new();
    obj.with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::RLE_LOSSLESS))
        .unwrap()
        .write_all(&mut bytes)
        .unwrap();
    let outcome = std::panic::catch_unwind(|| decode_bytes(&bytes, Limits::default()));
    let refusal = outcome.expect("no panic escapes the decoder").unwrap_err();
    assert!(refusal.to_string().contains("inconsistent"), "{refusal}");
}

/// An explicit-VR little-endian element: a 2-byte length for the short VRs, else 2 reserved
/// bytes and a 4-byte length.
fn element(group: u16, elem: u16, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
    let mut out = [group.to_le_bytes(), elem.to_le_bytes()].concat();
    out.extend(vr);
    if matches!(vr, b"UI" | b"SH" | b"CS" | b"US") {
        out.extend((value.len() as u16).to_le_bytes());
    } else {
        out.extend([0, 0]);
        out.extend((value.len() as u32).to_le_bytes());
    }
    out.extend(value);
    out
}

/// A sequence or item header with a 4-byte length (`u32::MAX`: undefined).
fn header(group: u16, elem: u16, vr: Option<&[u8; 2]>, len: u32) -> Vec<u8> {
    let mut out = [group.to_le_bytes(), elem.to_le_bytes()].concat();
    if let Some(vr) = vr {
        out.extend(vr);
        out.extend([0, 0]);
    }
    out.extend(len.to_le_bytes());
    out
}

/// Sequences of defined and undefined length, nested, empty, with items of both kinds: the
/// length check walks them as dicom-rs does and refuses none of it; the image decodes.
#[test]
fn valid_sequences_of_every_shape_still_decode() {
    use dicom_core::value::PrimitiveValue;
    use dicom_core::{DataElement, VR};
    use dicom_dictionary_std::{tags, uids};
    use dicom_object::FileMetaTableBuilder;
    const UNDEFINED: u32 = u32::MAX;
    let item_delim = header(0xFFFE, 0xE00D, None, 0);
    let seq_delim = header(0xFFFE, 0xE0DD, None, 0);
    let uid = |n: u8| element(0x0008, 0x1155, b"UI", format!("1.2.3.{n}\0").as_bytes());
    // (0008,1115) SQ, defined length 0
    let mut set = header(0x0008, 0x1115, Some(b"SQ"), 0);
    // (0008,1140) SQ of defined length: two items of defined length
    let items: Vec<u8> = (1..=2)
        .flat_map(|n| [header(0xFFFE, 0xE000, None, uid(n).len() as u32), uid(n)].concat())
        .collect();
    set.extend(header(0x0008, 0x1140, Some(b"SQ"), items.len() as u32));
    set.extend(&items);
    // (0040,0275) SQ of undefined length: an item of undefined length holding a defined
    // sequence (0040,0008) with one defined item, then an empty undefined sequence
    let code = element(0x0008, 0x0100, b"SH", b"X1");
    let inner = [header(0xFFFE, 0xE000, None, code.len() as u32), code].concat();
    set.extend(header(0x0040, 0x0275, Some(b"SQ"), UNDEFINED));
    set.extend(header(0xFFFE, 0xE000, None, UNDEFINED));
    set.extend(header(0x0040, 0x0008, Some(b"SQ"), inner.len() as u32));
    set.extend(&inner);
    set.extend(header(0x0040, 0x0009, Some(b"SQ"), UNDEFINED));
    set.extend(&seq_delim);
    set.extend(&item_delim);
    set.extend(&seq_delim);

    let mut obj = common::dicom_grey_image("1.2.826.0.1.3680043.2.1143.5", 48, 48, 12, "MONOCHROME2");
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(vec![300u16; 48 * 48].into()),
    ));
    let mut bytes = Vec::new();
    obj.with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
        .unwrap()
        .write_all(&mut bytes)
        .unwrap();
    // the sequences go right after the meta group, whose length is (0002,0000)'s value
    let meta_len = u32::from_le_bytes(bytes[140..144].try_into().unwrap()) as usize;
    let at = 144 + meta_len;
    bytes.splice(at..at, set);
    let r = decode_bytes(&bytes, Limits::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((r.image.width, r.image.height), (48, 48));
}
