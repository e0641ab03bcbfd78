//! From a radiograph file to the 8-bit grey image the models read, or a clear refusal.
//!
//! Formats are recognised by content, not by file name: DICOM (the `DICM` tag after the
//! 128-byte preamble) through dicom-rs, PNG, JPEG and TIFF through `image`. Everything
//! becomes one 8-bit grey plane, the display scale the models were trained on:
//!
//! - DICOM: the modality LUT (rescale slope/intercept) is applied by dicom-pixeldata; then
//!   the first VOI window of the file (DICOM's linear window function). Without a window,
//!   8-bit data is taken as it is (it is already on a display scale, like the training
//!   PNGs), and deeper data is stretched from its minimum to its maximum. MONOCHROME1
//!   (white = low values) is inverted last, so bone is always bright.
//! - 16-bit grey PNG or TIFF: minimum-to-maximum stretch, as for a DICOM without a window.
//! - Colour: Pillow's `convert('L')` rule (ITU-R 601 luma in integer arithmetic), because
//!   that is what the training pipeline did; `image`'s own `to_luma8` rounds differently.
//!
//! A DICOM object whose header says it is not a projection radiograph (a CT, an MR, a
//! segmentation, a report) is refused as not a chest radiograph before its pixels are read
//! (`projection`).
//!
//! Before any pixel is decoded, the declared size is checked against the configured pixel
//! limit, and the size it decodes to against the file's own size ([`MAX_EXPANSION`]), so a
//! small file that claims a huge image (a decompression bomb) costs nothing.
//!
//! Here: the types and the entry points, and the checks every format shares (the pixel
//! limit, the expansion bound, a decoder's panic as a refusal). Beside them: `lengths`
//! (every length a DICOM file declares, walked before dicom-rs reads it), `projection` (what
//! the header says the object is), `dicom` (its
//! pixels through dicom-rs), `picture` (PNG, JPEG, TIFF) and `display` (values to display
//! grey).

mod dicom;
mod display;
mod lengths;
mod picture;
mod projection;

use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;
use thiserror::Error;

use crate::base::files::sha256_hex;
use crate::base::outcome::ErrorKind;
use crate::config::Limits;
use crate::pixels::grey::GreyImage;

use dicom::decode_dicom;
pub use dicom::{modality_values, ModalityValues};
pub use display::pil_luma;
pub(crate) use display::stretch;
pub use lengths::check_header;
use picture::decode_picture;
pub use projection::check_projection;

/// Why a file could not be turned into a radiograph. The message names the file.
#[derive(Debug, Error)]
#[error("{}: {why}", file.display())]
pub struct DecodeError {
    pub file: PathBuf,
    pub why: Refusal,
}

impl DecodeError {
    pub fn kind(&self) -> ErrorKind {
        self.why.kind
    }
}

/// Why some bytes are not a radiograph ptxd can read: a stable kind for scripts
/// (`crate::base::outcome::ErrorKind`) and a reason for people.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{reason}")]
pub struct Refusal {
    pub kind: ErrorKind,
    pub reason: String,
}

impl Refusal {
    fn unsupported(reason: String) -> Refusal {
        Refusal {
            kind: ErrorKind::Unsupported,
            reason,
        }
    }

    fn too_large(reason: String) -> Refusal {
        Refusal {
            kind: ErrorKind::TooLarge,
            reason,
        }
    }
}

/// Most refusals are damaged data: a bare reason is a `decode` refusal, and the sites that
/// know better say `unsupported` or `too_large`.
impl From<String> for Refusal {
    fn from(reason: String) -> Refusal {
        Refusal {
            kind: ErrorKind::Decode,
            reason,
        }
    }
}

impl From<&str> for Refusal {
    fn from(reason: &str) -> Refusal {
        reason.to_string().into()
    }
}

/// Where the patient's right is in the image, which decides a finding's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Orientation {
    /// True when the patient's right is on the viewer's left (the radiographic convention
    /// for PA and AP chest films).
    pub patient_right_on_image_left: bool,
    /// True when that came from the file's DICOM Patient Orientation (0020,0020); false when
    /// the file says nothing and the convention is assumed.
    pub from_header: bool,
}

impl Orientation {
    pub const CONVENTION: Orientation = Orientation {
        patient_right_on_image_left: true,
        from_header: false,
    };
}

/// The kind of file a radiograph came in, found from its bytes (never from its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    Dicom,
    Png,
    Jpeg,
    Tiff,
}

impl InputFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            InputFormat::Dicom => "dicom",
            InputFormat::Png => "png",
            InputFormat::Jpeg => "jpeg",
            InputFormat::Tiff => "tiff",
        }
    }
}

impl std::fmt::Display for InputFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decoded radiograph with what the rest of the pipeline needs to know about its file.
#[derive(Debug, Clone)]
pub struct Radiograph {
    pub image: GreyImage,
    /// sha256 of the file's bytes, recorded in the journal.
    pub sha256: String,
    pub format: InputFormat,
    pub orientation: Orientation,
    /// The patient, study and instance a DICOM file names; None for other formats.
    pub study: Option<StudyContext>,
}

/// What a DICOM source says of its patient, its study and itself: what a result written as
/// DICOM carries to land in the same study, beside the image (`crate::record::dicom_result`).
/// Each is the file's text as it stands (empty when absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StudyContext {
    pub patient_name: String,
    pub patient_id: String,
    pub patient_birth_date: String,
    pub patient_sex: String,
    pub study_instance_uid: String,
    pub study_date: String,
    pub study_time: String,
    pub study_id: String,
    pub accession_number: String,
    pub referring_physician_name: String,
    pub series_instance_uid: String,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
}

impl StudyContext {
    fn of(obj: &DefaultDicomObject) -> StudyContext {
        let text = |tag| element_text(obj, tag);
        StudyContext {
            patient_name: text(tags::PATIENT_NAME),
            patient_id: text(tags::PATIENT_ID),
            patient_birth_date: text(tags::PATIENT_BIRTH_DATE),
            patient_sex: text(tags::PATIENT_SEX),
            study_instance_uid: text(tags::STUDY_INSTANCE_UID),
            study_date: text(tags::STUDY_DATE),
            study_time: text(tags::STUDY_TIME),
            study_id: text(tags::STUDY_ID),
            accession_number: text(tags::ACCESSION_NUMBER),
            referring_physician_name: text(tags::REFERRING_PHYSICIAN_NAME),
            series_instance_uid: text(tags::SERIES_INSTANCE_UID),
            sop_class_uid: text(tags::SOP_CLASS_UID),
            sop_instance_uid: text(tags::SOP_INSTANCE_UID),
        }
    }
}

/// A header element's text without its padding (NUL or space at the end); empty when the
/// element is absent or not text.
pub(super) fn element_text(obj: &DefaultDicomObject, tag: dicom_core::Tag) -> String {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok().map(|s| s.trim_end_matches(['\0', ' ']).to_string()))
        .unwrap_or_default()
}

/// Read and decode one file.
pub fn decode_file(path: &Path, limits: Limits) -> Result<Radiograph, DecodeError> {
    let bytes = read_input(path, limits)?;
    decode_bytes(&bytes, limits).map_err(|why| DecodeError {
        file: path.to_path_buf(),
        why,
    })
}

/// Read a file's bytes, refusing one larger than any image within the limits could need
/// ([`Limits::max_file_bytes`]) before reading it.
pub fn read_input(path: &Path, limits: Limits) -> Result<Vec<u8>, DecodeError> {
    let fail = |kind, reason: String| DecodeError {
        file: path.to_path_buf(),
        why: Refusal { kind, reason },
    };
    let max_bytes = limits.max_file_bytes();
    let size = std::fs::metadata(path)
        .map_err(|e| fail(ErrorKind::Io, format!("cannot read: {e}")))?
        .len();
    if size > max_bytes {
        return Err(fail(
            ErrorKind::TooLarge,
            format!(
                "file is {size} bytes, more than any image within the {} pixel limit needs",
                limits.max_pixels
            ),
        ));
    }
    std::fs::read(path).map_err(|e| fail(ErrorKind::Io, format!("cannot read: {e}")))
}

/// Decode a file's bytes; the error is the reason only (the caller names the file).
pub fn decode_bytes(bytes: &[u8], limits: Limits) -> Result<Radiograph, Refusal> {
    decode_hashed(bytes, sha256_hex(bytes), limits)
}

/// [`decode_bytes`] for a caller that has hashed the bytes already.
pub fn decode_hashed(bytes: &[u8], sha256: String, limits: Limits) -> Result<Radiograph, Refusal> {
    if bytes.is_empty() {
        return Err("file is empty".into());
    }
    let (image, format, orientation, study) = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        let (image, header) = guarded("DICOM", || decode_dicom(&bytes[128..], limits))?;
        (image, InputFormat::Dicom, header.orientation, Some(header.study))
    } else {
        let (image, format) = guarded("image", || decode_picture(bytes, limits))?;
        (image, format, Orientation::CONVENTION, None)
    };
    Ok(Radiograph {
        image,
        sha256,
        format,
        orientation,
        study,
    })
}

/// Run a third-party decoder so that a panic in it is a refusal of this file, not a crash of
/// the caller. Found by fuzzing (`fuzz/`): dicom-pixeldata 0.10's RLE decoder indexes out of
/// bounds on a frame whose segments decode to different lengths.
pub(super) fn guarded<T>(what: &str, decode: impl FnOnce() -> Result<T, Refusal>) -> Result<T, Refusal> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)).unwrap_or_else(|panic| {
        let why = crate::base::outcome::panic_text(&*panic);
        Err(format!("{what} data is inconsistent: the decoder failed on it ({why})").into())
    })
}

/// The most a file may expand when decoded (decoded bytes over file bytes) once it decodes
/// to more than [`EXPANSION_FLOOR`]. Measured: the 3,944 real radiographs in ../shared/data
/// expand at most 18.6 times (JPEG; PNG about 2); a 3000 px upscaled radiograph saved as a
/// colour JPEG at quality 50, smoother than any real one, 124 times. Deflate can expand
/// 1,000 times, RLE 64, a crafted JPEG several hundred: those are bombs, not radiographs.
pub const MAX_EXPANSION: u64 = 256;

/// The most a deflated DICOM data set may inflate (inflated bytes over deflated ones) once
/// it inflates to more than [`EXPANSION_FLOOR`]. Measured: the 24 real radiographs in
/// ../shared/data/dicom, uncompressed and deflated by dcmtk's `dcmconv +td`, inflate 1.4 to
/// 2.5 times; zeros inflate 1,032 times.
pub const MAX_DEFLATE_EXPANSION: u64 = 16;

/// Below this many decoded bytes nothing is refused for expanding: a small image costs
/// little, and test patterns and blank frames compress far better than radiographs.
pub const EXPANSION_FLOOR: u64 = 16 << 20;

/// Refuse a file that would expand to `decoded` bytes from `file` bytes: a decompression
/// bomb (or a damaged header), caught before the memory is spent.
pub(super) fn check_expansion(decoded: u64, file: usize) -> Result<(), Refusal> {
    let file = file.max(1) as u64;
    if decoded > EXPANSION_FLOOR && decoded / file > MAX_EXPANSION {
        return Err(format!(
            "the file ({file} bytes) would decode to {} MB, {} times its size; no radiograph expands more than {MAX_EXPANSION} times: a decompression bomb or a damaged header",
            decoded >> 20,
            decoded / file
        )
        .into());
    }
    Ok(())
}

pub(super) fn check_size(width: u64, height: u64, limits: Limits) -> Result<(), Refusal> {
    if width == 0 || height == 0 {
        return Err(format!("image is {width}x{height}: empty").into());
    }
    if width.saturating_mul(height) > limits.max_pixels {
        return Err(Refusal::too_large(format!(
            "image is {width}x{height}, above the configured limit of {} pixels (input.max_pixels)",
            limits.max_pixels
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    use super::display::*;

    use super::*;

    #[test]
    fn luma_matches_pillow_rule() {
        // Values from Pillow 10: Image.new('RGB', (1, 1), c).convert('L').getpixel((0, 0))
        assert_eq!(pil_luma(255, 255, 255), 255);
        assert_eq!(pil_luma(255, 0, 0), 76);
        assert_eq!(pil_luma(0, 255, 0), 150);
        assert_eq!(pil_luma(0, 0, 255), 29);
        assert_eq!(pil_luma(10, 200, 30), 124);
    }

    #[test]
    fn window_follows_dicom_linear_function() {
        // centre 100, width 50: below 75 black, above 124 white, centre mid-grey
        let out = to_display(&[0.0, 74.0, 100.0, 125.0, 4000.0], Some((100.0, 50.0)), 12);
        assert_eq!(out[0], 0);
        assert_eq!(out[1], 0);
        assert!((127..=133).contains(&out[2]), "{}", out[2]);
        assert_eq!(out[3], 255);
        assert_eq!(out[4], 255);
    }

    #[test]
    fn eight_bit_without_window_is_kept_and_deeper_data_is_stretched() {
        assert_eq!(to_display(&[3.0, 250.0], None, 8), vec![3, 250]);
        assert_eq!(to_display(&[100.0, 1100.0, 600.0], None, 12), vec![0, 255, 128]);
    }

    #[test]
    fn a_torn_jpeg_is_refused_and_a_whole_one_read() {
        let film = image::GrayImage::from_fn(64, 48, |x, y| image::Luma([(x * 3 + y) as u8]));
        let mut jpeg = Vec::new();
        film.write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
            .unwrap();
        let whole = decode_bytes(&jpeg, Limits::default()).unwrap();
        assert_eq!((whole.image.width, whole.image.height), (64, 48));
        let torn = decode_bytes(&jpeg[..jpeg.len() * 2 / 3], Limits::default()).unwrap_err();
        assert_eq!(torn.kind, ErrorKind::Decode);
        assert!(torn.reason.contains("truncated"), "{torn}");
        // bytes after the end-of-image marker (some cameras append data) are no tear
        jpeg.extend_from_slice(b"trailer");
        assert!(decode_bytes(&jpeg, Limits::default()).is_ok());
    }

    #[test]
    fn garbage_and_empty_bytes_are_refused_with_a_reason() {
        let empty = decode_bytes(b"", Limits::default()).unwrap_err();
        assert_eq!(
            (empty.kind, empty.reason.as_str()),
            (ErrorKind::Decode, "file is empty")
        );
        let err = decode_bytes(b"hello, not an image", Limits::default()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unsupported);
        assert!(err.reason.contains("not a DICOM, PNG, JPEG or TIFF"), "{err}");
    }
}
