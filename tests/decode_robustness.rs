//! Damaged files never crash the decoder: real DICOM, PNG, JPEG and a TIFF made from them,
//! cut short at many offsets and with bytes overwritten at many places. Each must give an
//! image or an error, and must not panic.

mod common;

use common::{data, REAL_PNG};
use ptxd::config::Limits;
use ptxd::decode::decode_bytes;

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
