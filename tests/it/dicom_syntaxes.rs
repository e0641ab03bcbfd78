//! Every DICOM transfer syntax a digitizer may send decodes, to the samples an independent
//! decoder finds in the same file.
//!
//! `tests/dicom/make_syntaxes.py` encodes one real radiograph (made 12-bit) with encoders
//! that are not ptxd's (dcmtk, OpenJPEG, pydicom) and writes pydicom's decode of each file
//! beside it. ptxd must read pydicom's modality values, sample for sample, and for a
//! lossless encoding the source's own values; and the display grey the models read must be
//! the same from the file as from pydicom's decode of it written uncompressed.

use crate::common;

use std::path::Path;

use ptxd::base::outcome::ErrorKind;
use ptxd::config::Limits;
use ptxd::pixels::decode::{decode_bytes, modality_values, ModalityValues};

#[derive(serde::Deserialize)]
struct Manifest {
    files: Vec<Encoded>,
}

#[derive(serde::Deserialize)]
struct Encoded {
    name: String,
    syntax: String,
    lossless: bool,
    /// The values of the image it encodes (little-endian f32).
    source: String,
    file: String,
    /// pydicom's decode of `file`, uncompressed.
    reference: String,
    /// pydicom's modality values of `file` (little-endian f32).
    values: String,
    /// dcmtk's (IJG libjpeg's) modality values of a DCT JPEG `file`, a second decoder.
    values_ijg: Option<String>,
}

/// The transfer syntaxes the test must cover, whatever the generator wrote: a syntax it
/// dropped fails here.
const SYNTAXES: [(&str, &str); 10] = [
    ("1.2.840.10008.1.2", "implicit VR little endian"),
    ("1.2.840.10008.1.2.1", "explicit VR little endian (16-bit signed)"),
    ("1.2.840.10008.1.2.2", "explicit VR big endian"),
    ("1.2.840.10008.1.2.1.99", "deflated explicit VR little endian"),
    ("1.2.840.10008.1.2.5", "RLE lossless"),
    ("1.2.840.10008.1.2.4.70", "JPEG lossless, first-order prediction (SV1)"),
    ("1.2.840.10008.1.2.4.57", "JPEG lossless, process 14"),
    ("1.2.840.10008.1.2.4.80", "JPEG-LS lossless"),
    ("1.2.840.10008.1.2.4.81", "JPEG-LS near-lossless"),
    ("1.2.840.10008.1.2.4.90", "JPEG 2000 lossless"),
];

/// JPEG 2000 (lossy) is listed apart so the array above stays one entry a syntax.
const JPEG2000_LOSSY: &str = "1.2.840.10008.1.2.4.91";

/// Extended JPEG: 8-bit samples (dicom-rs's jpeg-decoder) and 12-bit ones (libjpeg-turbo,
/// src/pixels/jpeg12.rs) take different decoders; the test wants both files.
const JPEG_EXTENDED: &str = "1.2.840.10008.1.2.4.51";

fn make(dir: &Path) -> Manifest {
    common::make_dicom_syntaxes(dir);
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

fn values(path: &Path) -> ModalityValues {
    let bytes = std::fs::read(path).unwrap();
    modality_values(&bytes, Limits::default()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Values written by the generator from its own arrays (little-endian f32): never read
/// through ptxd, so an error in ptxd's common path cannot hide on both sides.
fn written_values(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The largest difference between ptxd's decode and another's of one image.
fn max_difference(ours: &ModalityValues, theirs: &[f32]) -> f32 {
    assert_eq!(ours.values.len(), theirs.len(), "not the same number of samples");
    ours.values
        .iter()
        .zip(theirs)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn every_transfer_syntax_decodes_to_the_samples_pydicom_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = make(dir.path());
    let source = written_values(&dir.path().join("source-12bit.values"));
    assert_eq!(source.len(), 512 * 512);
    // 12 bits, every one of them content (make_syntaxes.py): a decoder that drops or shifts
    // any bit cannot pass
    assert!(source.iter().any(|v| *v >= 2048.0));
    assert!(source.iter().any(|v| v % 2.0 == 1.0));

    let mut covered: Vec<&str> = Vec::new();
    for encoded in &manifest.files {
        let file = dir.path().join(&encoded.file);
        let ours = values(&file);
        let pydicom = written_values(&dir.path().join(&encoded.values));
        let against_pydicom = max_difference(&ours, &pydicom);
        let source = written_values(&dir.path().join(&encoded.source));
        let against_source = max_difference(&ours, &source);
        eprintln!(
            "{:24} {}: ptxd - pydicom max {against_pydicom}, ptxd - source max {against_source}",
            encoded.name, encoded.syntax
        );
        // DCT JPEG decoders may round their inverse DCT differently (measured): on the 12-bit
        // file pydicom's libjpeg and dcmtk's IJG libjpeg differ by 2 levels of 4,095, and
        // ptxd's libjpeg-turbo, which continues IJG's code, must equal dcmtk's exactly; on the
        // 8-bit file the two agree and jpeg-decoder (dicom-rs's) differs by 1 of 255. Every
        // other syntax decodes exactly.
        let twelve_bit_jpeg = encoded.syntax == JPEG_EXTENDED && encoded.name.contains("12bit");
        let tolerance = match (encoded.syntax == JPEG_EXTENDED, twelve_bit_jpeg) {
            (true, true) => 2.0,
            (true, false) => 1.0,
            _ => 0.0,
        };
        if let Some(ijg) = &encoded.values_ijg {
            let against_ijg = max_difference(&ours, &written_values(&dir.path().join(ijg)));
            eprintln!("{:24} ptxd - dcmtk (IJG) max {against_ijg}", encoded.name);
            let allowed = if twelve_bit_jpeg { 0.0 } else { 1.0 };
            assert!(
                against_ijg <= allowed,
                "{}: ptxd and dcmtk decode it differently (by {against_ijg})",
                encoded.name
            );
        }
        assert!(
            against_pydicom <= tolerance,
            "{}: ptxd and pydicom decode it differently (by {against_pydicom})",
            encoded.name
        );
        if encoded.lossless {
            assert_eq!(
                against_source, 0.0,
                "{}: a lossless encoding lost something",
                encoded.name
            );
        } else if encoded.syntax == "1.2.840.10008.1.2.4.81" {
            // JPEG-LS near-lossless bounds each sample's error: NEAR = 2 (dcmcjpls +en)
            assert!(
                against_source > 0.0 && against_source <= 2.0,
                "{}: not NEAR = 2",
                encoded.name
            );
        } else {
            // lossy (JPEG 2000 at 20:1, extended JPEG at quality 90), but close on average:
            // under 1% of the range
            let range = source.iter().fold(0.0f32, |m, v| m.max(*v));
            let mean =
                ours.values.iter().zip(&source).map(|(a, b)| (a - b).abs()).sum::<f32>() / ours.values.len() as f32;
            eprintln!("{:24} mean difference from the source {mean:.2}", "");
            assert!(
                against_source > 0.0,
                "{}: not lossy, not the encoding meant",
                encoded.name
            );
            assert!(mean < range / 100.0, "{}: far from the source", encoded.name);
        }
        // and the daemon's own path (the display grey the models read) agrees too
        let grey = |path: &Path| {
            decode_bytes(&std::fs::read(path).unwrap(), Limits::default())
                .unwrap()
                .image
        };
        let (a, b) = (grey(&file), grey(&dir.path().join(&encoded.reference)));
        let grey_difference = a.pixels.iter().zip(&b.pixels).map(|(x, y)| x.abs_diff(*y)).max();
        assert!(
            (a.width, a.height) == (b.width, b.height) && grey_difference <= Some(tolerance.min(1.0) as u8),
            "{}: display grey differs from pydicom's decode (by {grey_difference:?})",
            encoded.name
        );
        covered.push(&encoded.syntax);
    }
    let apart = [(JPEG2000_LOSSY, "JPEG 2000"), (JPEG_EXTENDED, "extended JPEG")];
    for (uid, what) in SYNTAXES.iter().chain(&apart) {
        assert!(covered.contains(uid), "{what} ({uid}) was not tested");
    }
    let extended: Vec<_> = manifest.files.iter().filter(|f| f.syntax == JPEG_EXTENDED).collect();
    assert_eq!(extended.len(), 2, "extended JPEG wants an 8-bit and a 12-bit file");
    assert!(
        extended.iter().all(|f| f.values_ijg.is_some()),
        "extended JPEG wants dcmtk's decode too"
    );
}

/// A damaged 12-bit JPEG stream (cut in half, as a dropped transfer leaves it) is refused as
/// damaged, with libjpeg-turbo's reason: never a half-grey image judged, never a panic.
#[test]
fn a_truncated_12_bit_jpeg_is_refused_as_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = make(dir.path());
    let twelve = manifest
        .files
        .iter()
        .find(|f| f.syntax == JPEG_EXTENDED && f.name.contains("12bit"))
        .expect("the generator writes a 12-bit extended JPEG");
    let mut obj = dicom_object::open_file(dir.path().join(&twelve.file)).unwrap();
    let mut pixel_data = obj.take_element(dicom_dictionary_std::tags::PIXEL_DATA).unwrap();
    let fragments = pixel_data.fragments_mut().expect("encapsulated");
    let whole: Vec<u8> = fragments.iter().flatten().copied().collect();
    fragments.clear();
    // an even length, as DICOM fragments are
    fragments.push(whole[..(whole.len() / 2) & !1].to_vec());
    obj.put(pixel_data);
    let mut bytes = Vec::new();
    obj.write_all(&mut bytes).unwrap();

    let refusal = decode_bytes(&bytes, Limits::default()).unwrap_err();
    eprintln!("{refusal}");
    assert_eq!(refusal.kind, ErrorKind::Decode, "{refusal}");
    assert!(
        refusal.reason.contains("12-bit extended JPEG cannot be decoded"),
        "{refusal}"
    );
}

/// A compressed frame that declares more pixels than its DICOM header (a forged file: the
/// decoders allocate for the frame's own size, which the pixel limit never saw; a lossless
/// JPEG one cost 1.1 GB before this check), or more components, or a JPEG 2000 frame cut
/// into thousands of tiles, is refused before any decoder runs, in each codec family.
#[test]
fn a_frame_declaring_more_than_its_header_is_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    make(dir.path());
    // (file, the marker its header starts at, offsets from it to the width and to the
    // number of components)
    let files = [
        ("jpeg-lossless-sv1.dcm", vec![0xFF, 0xC3], 7, 9),
        ("jpeg-extended-12bit.dcm", vec![0xFF, 0xC1], 7, 9),
        ("jpeg-ls-lossless.dcm", vec![0xFF, 0xF7], 7, 9),
        ("jpeg2000-lossless.dcm", vec![0xFF, 0x4F, 0xFF, 0x51], 8, 40),
    ];
    for (name, marker, width_at, components_at) in files {
        let refused = |at: usize, value: &[u8]| {
            let refusal =
                decode_bytes(&forge(&dir.path().join(name), &marker, at, value), Limits::default()).unwrap_err();
            assert_eq!(refusal.kind, ErrorKind::Decode, "{name}: {refusal}");
            refusal.reason
        };
        // 60,000 pixels wide (JPEG: 16 bits; JPEG 2000: 32 bits, the reference grid)
        let wide = match marker.len() {
            2 => refused(width_at, &60_000u16.to_be_bytes()),
            _ => refused(width_at, &60_000u32.to_be_bytes()),
        };
        assert!(
            wide.contains("says 512x512 pixels but its compressed frame declares 60000x512"),
            "{name}: {wide}"
        );
        // three components in a grey image (JPEG: 8 bits; JPEG 2000: 16)
        let colour = match marker.len() {
            2 => refused(components_at, &[3]),
            _ => refused(components_at, &3u16.to_be_bytes()),
        };
        assert!(
            colour.contains("says 1 samples per pixel but its compressed frame declares 3 components"),
            "{name}: {colour}"
        );
    }
    // JPEG 2000 tiles of 4x4 pixels: 16,384 of them over 512x512 (XTsiz, YTsiz follow the
    // grid and its offset)
    let tiles: Vec<u8> = [4u32, 4].iter().flat_map(|v| v.to_be_bytes()).collect();
    let path = dir.path().join("jpeg2000-lossless.dcm");
    let refusal = decode_bytes(
        &forge(&path, &[0xFF, 0x4F, 0xFF, 0x51], 8 + 16, &tiles),
        Limits::default(),
    )
    .unwrap_err();
    assert!(refusal.reason.contains("cut into 16384 tiles"), "{refusal}");
}

/// `path`'s DICOM bytes with `value` written over its first frame, `at` bytes after the
/// first `marker` in it.
fn forge(path: &Path, marker: &[u8], at: usize, value: &[u8]) -> Vec<u8> {
    let mut obj = dicom_object::open_file(path).unwrap();
    let mut pixel_data = obj.take_element(dicom_dictionary_std::tags::PIXEL_DATA).unwrap();
    let frame = &mut pixel_data.fragments_mut().expect("encapsulated")[0];
    let at = frame
        .windows(marker.len())
        .position(|w| w == marker)
        .unwrap_or_else(|| panic!("{}: no {marker:02X?}", path.display()))
        + at;
    frame[at..at + value.len()].copy_from_slice(value);
    obj.put(pixel_data);
    let mut bytes = Vec::new();
    obj.write_all(&mut bytes).unwrap();
    bytes
}
