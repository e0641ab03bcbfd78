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
//! Before any pixel is decoded, the declared size is checked against the configured pixel
//! limit, and the size it decodes to against the file's own size ([`MAX_EXPANSION`]), so a
//! small file that claims a huge image (a decompression bomb) costs nothing.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{DefaultDicomObject, OpenFileOptions, StandardDataDictionary};
use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder, VoiLutOption};
use image::{DynamicImage, ImageDecoder, ImageReader};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::base::files::hex;
use crate::base::outcome::ErrorKind;
use crate::config::Limits;
use crate::pixels::codestream;
use crate::pixels::grey::GreyImage;
use crate::pixels::jpeg12;

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
        let text = |tag| {
            obj.element_opt(tag)
                .ok()
                .flatten()
                .and_then(|e| e.to_str().ok().map(|s| s.trim_end_matches(['\0', ' ']).to_string()))
                .unwrap_or_default()
        };
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

/// Read and decode one file.
pub fn decode_file(path: &Path, limits: Limits) -> Result<Radiograph, DecodeError> {
    let bytes = read_input(path, limits)?;
    decode_bytes(&bytes, limits).map_err(|why| DecodeError {
        file: path.to_path_buf(),
        why,
    })
}

/// Read a file's bytes, refusing one larger than any image within the limits could need
/// (~8 bytes a pixel for uncompressed 16-bit RGBA, plus headers) before reading it.
pub fn read_input(path: &Path, limits: Limits) -> Result<Vec<u8>, DecodeError> {
    let fail = |kind, reason: String| DecodeError {
        file: path.to_path_buf(),
        why: Refusal { kind, reason },
    };
    let max_bytes = limits.max_pixels.saturating_mul(8).saturating_add(1 << 20);
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
    decode_hashed(bytes, hex(&Sha256::digest(bytes)), limits)
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
fn guarded<T>(what: &str, decode: impl FnOnce() -> Result<T, Refusal>) -> Result<T, Refusal> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)).unwrap_or_else(|panic| {
        let why = crate::base::outcome::panic_text(&*panic);
        Err(format!("{what} data is inconsistent: the decoder failed on it ({why})").into())
    })
}

/// What [`check_declared_lengths`] is inside of.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Frame {
    Sequence,
    Item,
}

/// Check every length a DICOM file declares against the bytes that follow it, before
/// dicom-rs reads it. Why: dicom-rs 0.10 reserves and zero-fills a value's declared length
/// before reading it, so a 3 KB file declaring an 800 MB value made ptxd touch 983 MB before
/// the read failed (found by fuzzing, `fuzz/`). No value can be longer than what is left of
/// the file, so such a length is a damaged or hostile file.
///
/// The walk follows the encoding (the meta group is explicit VR little endian; the data set
/// is in its transfer syntax) and goes into sequences and their items, whose elements dicom-rs
/// also reads, but not into encapsulated pixel data fragments (bytes, not elements).
/// `file` starts at the `DICM` magic.
///
/// A deflated data set is inflated here first, at most to the size any image within the
/// limits needs, and walked inflated: dicom-rs inflates it without a bound, so 1 MB of
/// zeros would otherwise make a 1 GB data set (deflate expands up to 1,032 times).
fn check_declared_lengths(file: &[u8], limits: Limits) -> Result<(), Refusal> {
    let Walked::Deflated { at } = walk_lengths(file, Part::MetaThenDataSet)? else {
        return Ok(());
    };
    // what an uncompressed file within the limits may hold (`read_input`), and no more than
    // a real data set inflates
    let bound = (limits.max_pixels.saturating_mul(8).saturating_add(1 << 20)).min(
        ((file.len() - at) as u64)
            .saturating_mul(MAX_DEFLATE_EXPANSION)
            .max(EXPANSION_FLOOR),
    );
    let mut data_set = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(flate2::read::DeflateDecoder::new(&file[at..]), bound + 1),
        &mut data_set,
    )
    .map_err(|e| format!("deflated DICOM data set cannot be inflated: {e}"))?;
    if data_set.len() as u64 > bound {
        return Err(format!(
            "deflated DICOM data set inflates to more than {} MB from {} bytes: a decompression bomb, or an image beyond the pixel limit (input.max_pixels)",
            bound >> 20,
            file.len() - at
        )
        .into());
    }
    walk_lengths(&data_set, Part::DataSet).map(|_| ())
}

/// Check a whole DICOM file (preamble included) as [`decode_bytes`] does before reading it:
/// the magic, and every declared length. For a reader of the header only (the DICOM
/// listener's chest check), which dicom-rs would otherwise read unbounded.
pub fn check_header(file: &[u8], limits: Limits) -> Result<(), Refusal> {
    if file.len() < 132 || &file[128..132] != b"DICM" {
        return Err(Refusal::unsupported("not a DICOM file".into()));
    }
    check_declared_lengths(&file[128..], limits)
}

/// Where [`walk_lengths`] starts: at the meta group (after `DICM`), or at an inflated data set.
#[derive(Clone, Copy, PartialEq)]
enum Part {
    MetaThenDataSet,
    DataSet,
}

/// How [`walk_lengths`] ended: every element walked, or at a deflated data set starting at
/// byte `at`, which is compressed bytes, not elements, until inflated.
enum Walked {
    Whole,
    Deflated { at: usize },
}

fn walk_lengths(file: &[u8], part: Part) -> Result<Walked, Refusal> {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
    const UNDEFINED: u32 = u32::MAX;
    let in_meta = part == Part::MetaThenDataSet;
    let (mut explicit, mut big_endian, mut in_meta, mut fragments) = (true, false, in_meta, false);
    let mut syntax = String::new();
    // dicom-rs reads the meta group as explicit VR LE until the bytes its group length
    // (0002,0000) declares are read, whatever the groups in them (found by fuzzing: a walk
    // that ended the meta at the first other group read a different data set)
    let mut meta_end: Option<usize> = None;
    // The sequences and items the walk is in, each with its end when its length is defined.
    // dicom-rs reads an item header only directly inside a sequence; elsewhere an item tag
    // with a defined length is a plain element whose value it reads (found by the long fuzz
    // run: a walk that entered such an "item" read different headers and missed a 394 MB
    // OB value, 828 MB touched for 3 KB).
    let mut frames: Vec<(Frame, Option<usize>)> = Vec::new();
    let mut pos = if in_meta { 4 } else { 0 };
    while pos + 8 <= file.len() {
        // sequences and items of defined length end by position
        while let Some(&(_, Some(end))) = frames.last() {
            match end.cmp(&pos) {
                std::cmp::Ordering::Greater => break,
                std::cmp::Ordering::Equal => _ = frames.pop(),
                std::cmp::Ordering::Less => {
                    return Err(format!(
                        "DICOM element before byte {pos} runs past the end of its sequence or item (byte {end}): a damaged file"
                    )
                    .into())
                }
            }
        }
        let in_sequence = matches!(frames.last(), Some((Frame::Sequence, _)));
        let meta_over = match meta_end {
            Some(end) => pos >= end,
            None => u16::from_le_bytes([file[pos], file[pos + 1]]) != 0x0002,
        };
        if in_meta && meta_over {
            in_meta = false;
            // big endian is retired from the standard, and old modalities still write it
            #[allow(deprecated)]
            match syntax.as_str() {
                uids::IMPLICIT_VR_LITTLE_ENDIAN => explicit = false,
                uids::EXPLICIT_VR_BIG_ENDIAN => big_endian = true,
                uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN => return Ok(Walked::Deflated { at: pos }),
                _ => {}
            }
        }
        let Some(Header {
            group,
            element,
            vr,
            len,
            size,
        }) = read_header(file, pos, explicit, big_endian)
        else {
            break; // too short for a header: dicom-rs stops there too
        };
        pos += size;
        let tag = (group, element);
        if in_sequence && group != 0xFFFE {
            return Err(format!(
                "DICOM element ({group:04X},{element:04X}) stands where a sequence item must: a damaged file"
            )
            .into());
        }
        match tag {
            (0xFFFE, 0xE0DD) => {
                fragments = false; // the end of a sequence (or of the pixel data's fragments)
                if in_sequence {
                    frames.pop();
                }
            }
            (0xFFFE, 0xE00D) if matches!(frames.last(), Some((Frame::Item, _))) => _ = frames.pop(),
            _ => {}
        }
        if len == UNDEFINED {
            // a sequence, an item or encapsulated pixel data: its content follows as headers
            if tag == (0x7FE0, 0x0010) {
                fragments = true;
            } else if in_sequence && tag == (0xFFFE, 0xE000) {
                frames.push((Frame::Item, None));
            } else if group != 0xFFFE {
                frames.push((Frame::Sequence, None));
            }
            continue;
        }
        let left = file.len() - pos;
        if len as usize > left {
            return Err(format!(
                "DICOM element ({group:04X},{element:04X}) declares {len} bytes but only {left} remain: a damaged or truncated file"
            )
            .into());
        }
        let known = match explicit {
            true => dicom_core::VR::from_binary([vr[0], vr[1]]).map(VirtualVr::Exact),
            false => StandardDataDictionary
                .by_tag(dicom_object::Tag(group, element))
                .map(|e| e.vr()),
        };
        let sequence = known == Some(VirtualVr::Exact(dicom_core::VR::SQ));
        // dicom-rs reads a binary value as whole numbers (a UL of 2 bytes as none) and then
        // reads the next header from the bytes left over: out of step with this walk, where
        // a huge length can hide (found by fuzzing: a 3 KB file, 1.3 GB). No valid value has
        // a partial number.
        let unit = value_unit(known);
        if group != 0xFFFE && len % unit != 0 {
            return Err(format!(
                "DICOM element ({group:04X},{element:04X}) holds {len} bytes, not a whole number of {unit}-byte values: a damaged file"
            )
            .into());
        }
        let item = in_sequence && tag == (0xFFFE, 0xE000) && !fragments;
        let end = Some(pos + len as usize);
        if item {
            frames.push((Frame::Item, end));
        } else if sequence {
            frames.push((Frame::Sequence, end));
        }
        if in_meta && tag == (0x0002, 0x0000) && len == 4 && meta_end.is_none() {
            let at = pos;
            meta_end =
                Some(pos + 4 + u32::from_le_bytes([file[at], file[at + 1], file[at + 2], file[at + 3]]) as usize);
        }
        if in_meta && tag == (0x0002, 0x0010) {
            syntax = String::from_utf8_lossy(&file[pos..pos + len as usize])
                .trim_end_matches(['\0', ' '])
                .to_string();
        }
        if !(sequence || item) {
            pos += len as usize; // a value: skip it; a sequence's or item's content is walked
        }
    }
    Ok(Walked::Whole)
}

/// One element's header as dicom-rs reads it.
struct Header {
    group: u16,
    element: u16,
    vr: [u8; 2],
    len: u32,
    /// The header's own size: 8 or 12 bytes.
    size: usize,
}

/// The header at `pos`, None when the file is too short for it.
fn read_header(file: &[u8], pos: usize, explicit: bool, big_endian: bool) -> Option<Header> {
    let bytes = |at: usize, n: usize| file.get(at..at + n);
    let u16_at = |at: usize| {
        let b: [u8; 2] = bytes(at, 2)?.try_into().ok()?;
        Some(if big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    };
    let u32_at = |at: usize| {
        let b: [u8; 4] = bytes(at, 4)?.try_into().ok()?;
        Some(if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    let (group, element) = (u16_at(pos)?, u16_at(pos + 2)?);
    let vr: [u8; 2] = bytes(pos + 4, 2)?.try_into().ok()?;
    // the VRs with a 2-byte length; any other, an unknown one too, has a 4-byte length
    // after 2 reserved bytes (dicom-rs reads an unknown VR as UN)
    const SHORT_VR: [&[u8; 2]; 21] = [
        b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN", b"SH", b"SL", b"SS",
        b"ST", b"TM", b"UI", b"UL", b"US",
    ];
    let (len, size) = if group == 0xFFFE || !explicit {
        (u32_at(pos + 4)?, 8) // items, delimiters, implicit VR: tag and a 4-byte length
    } else if SHORT_VR.contains(&&vr) {
        (u32::from(u16_at(pos + 6)?), 8)
    } else {
        (u32_at(pos + 8)?, 12)
    };
    Some(Header {
        group,
        element,
        vr,
        len,
        size,
    })
}

/// The size of one value of a binary VR (1 for bytes, text and unknown VRs, read as UN).
fn value_unit(vr: Option<dicom_core::dictionary::VirtualVr>) -> u32 {
    use dicom_core::dictionary::VirtualVr;
    match vr {
        Some(VirtualVr::Exact(vr)) => {
            use dicom_core::VR::*;
            match vr {
                US | SS | OW => 2,
                UL | SL | FL | OF | OL | AT => 4,
                FD | OD | SV | UV | OV => 8,
                _ => 1,
            }
        }
        Some(VirtualVr::Xs | VirtualVr::Lt | VirtualVr::Ox | VirtualVr::Px) => 2,
        _ => 1,
    }
}

/// A grey DICOM image's values after the modality LUT (rescale slope and intercept), before
/// any window: what ptxd maps to display grey. Public so that another decoder's output can be
/// compared with ptxd's sample for sample (tests/it/dicom_syntaxes.rs).
#[derive(Debug, Clone, PartialEq)]
pub struct ModalityValues {
    pub width: usize,
    pub height: usize,
    /// Row by row, `width * height` of them.
    pub values: Vec<f32>,
}

/// The modality values of a grey DICOM file's (only) frame, checked and decoded as
/// [`decode_bytes`] does.
pub fn modality_values(bytes: &[u8], limits: Limits) -> Result<ModalityValues, Refusal> {
    if bytes.len() < 132 || &bytes[128..132] != b"DICM" {
        return Err(Refusal::unsupported("not a DICOM file".into()));
    }
    guarded("DICOM", || {
        with_pixel_data(&bytes[128..], limits, |pixels, _| {
            if pixels.samples_per_pixel() != 1 {
                return Err(Refusal::unsupported("DICOM is colour, not grey".into()));
            }
            Ok(ModalityValues {
                width: pixels.columns() as usize,
                height: pixels.rows() as usize,
                values: grey_values(pixels)?,
            })
        })
    })
}

fn decode_dicom(after_preamble: &[u8], limits: Limits) -> Result<(GreyImage, FileHeader), Refusal> {
    with_pixel_data(after_preamble, limits, to_grey)
}

/// What the rest of the pipeline keeps of a DICOM file's header.
struct FileHeader {
    orientation: Orientation,
    study: StudyContext,
}

/// A decoded DICOM frame as display grey: window, MONOCHROME1 inverted, colour to luma.
fn to_grey(
    pixels: &dicom_pixeldata::DecodedPixelData<'_>,
    header: FileHeader,
) -> Result<(GreyImage, FileHeader), Refusal> {
    let (w, h) = (pixels.columns() as usize, pixels.rows() as usize);
    let grey: Vec<u8> = match pixels.samples_per_pixel() {
        1 => {
            let values = grey_values(pixels)?;
            let window = pixels
                .window()
                .ok()
                .flatten()
                .and_then(|w| w.first().copied())
                .filter(|w| w.width >= 1.0)
                .map(|w| (w.center, w.width));
            let mut grey = to_display(&values, window, pixels.bits_stored());
            if pixels.photometric_interpretation().as_str() == "MONOCHROME1" {
                grey.iter_mut().for_each(|v| *v = 255 - *v);
            }
            grey
        }
        3 => {
            let rgb: Vec<u8> = pixels
                .to_vec_frame_with_options(0, &ConvertOptions::new().with_modality_lut(ModalityLutOption::None))
                .map_err(|e| format!("DICOM colour pixel data cannot be converted: {e}"))?;
            rgb.chunks_exact(3).map(|p| pil_luma(p[0], p[1], p[2])).collect()
        }
        n => {
            return Err(Refusal::unsupported(format!(
                "DICOM has {n} samples per pixel; expected 1 (grey) or 3 (colour)"
            )))
        }
    };
    let image = GreyImage::new(w, h, grey)
        .ok_or_else(|| format!("DICOM pixel data is shorter than its declared {w}x{h} (truncated file?)"))?;
    Ok((image, header))
}

/// Check a DICOM file's declared sizes, then read it, decode its pixel data (whatever the
/// transfer syntax) and hand it, with what its header says, to `then`. A
/// callback because the decoded pixels borrow the file's object: no copy of them is made.
fn with_pixel_data<T>(
    after_preamble: &[u8],
    limits: Limits,
    then: impl FnOnce(&dicom_pixeldata::DecodedPixelData<'_>, FileHeader) -> Result<T, Refusal>,
) -> Result<T, Refusal> {
    check_declared_lengths(after_preamble, limits)?;
    let mut obj = OpenFileOptions::new().from_reader(after_preamble).map_err(|e| {
        let reason = format!("not a readable DICOM file: {e}");
        // dicom-object 0.10 reads data sets in the transfer syntaxes it knows; the others
        // (private ones, for instance) are a valid file ptxd cannot read, not a damaged one
        match e.to_string().contains("Unsupported reading for transfer syntax") {
            true => Refusal::unsupported(reason),
            false => reason.into(),
        }
    })?;
    let rows: u64 = int_attr(&obj, tags::ROWS, "Rows")?;
    let columns: u64 = int_attr(&obj, tags::COLUMNS, "Columns")?;
    let frames: u64 = match obj.element_opt(tags::NUMBER_OF_FRAMES).ok().flatten() {
        Some(e) => e.to_int().map_err(|e| format!("bad Number of Frames: {e}"))?,
        None => 1,
    };
    if frames != 1 {
        return Err(Refusal::unsupported(format!(
            "DICOM holds {frames} frames; ptxd reads single-frame 2-D radiographs only"
        )));
    }
    check_size(columns, rows, limits)?;
    let samples: u64 = int_attr(&obj, tags::SAMPLES_PER_PIXEL, "Samples per Pixel").unwrap_or(1);
    let bits: u64 = int_attr(&obj, tags::BITS_ALLOCATED, "Bits Allocated").unwrap_or(16);
    let decoded = rows * columns * samples.clamp(1, 4) * bits.clamp(1, 64).div_ceil(8);
    check_expansion(decoded, after_preamble.len() + 128)?;
    check_frame_header(&obj, rows, columns, samples)?;
    let syntax = obj.meta().transfer_syntax().trim_end_matches(['\0', ' ']);
    // JPEG extended (process 2 and 4): dicom-rs decodes its 8-bit samples, jpeg12 its 12-bit ones
    if syntax == uids::JPEG_EXTENDED12_BIT && int_attr(&obj, tags::BITS_STORED, "Bits Stored").unwrap_or(8) > 8 {
        decode_jpeg12_in_place(&mut obj, rows, columns, limits)?;
    }
    let header = FileHeader {
        orientation: dicom_orientation(&obj),
        study: StudyContext::of(&obj),
    };
    let pixels = obj.decode_pixel_data().map_err(|e| {
        let reason = format!("DICOM pixel data cannot be decoded: {e}");
        // dicom-pixeldata's error kinds are private; its messages for an encoding it does
        // not read start with these words (0.10: UnsupportedTransferSyntax,
        // UnknownTransferSyntax, UnsupportedPhotometricInterpretation, ...).
        let text = e.to_string();
        if text.starts_with("Unsupported") || text.starts_with("Unknown transfer syntax") {
            Refusal::unsupported(reason)
        } else {
            reason.into()
        }
    })?;
    then(&pixels, header)
}

/// A grey frame's values through the modality LUT.
fn grey_values(pixels: &dicom_pixeldata::DecodedPixelData<'_>) -> Result<Vec<f32>, Refusal> {
    pixels
        .to_vec_frame_with_options(
            0,
            &ConvertOptions::new()
                .with_modality_lut(ModalityLutOption::Default)
                .with_voi_lut(VoiLutOption::Identity),
        )
        .map_err(|e| format!("DICOM pixel data is incomplete or unreadable (truncated file?): {e}").into())
}

/// How much of a compressed frame's start is searched for its header: the markers before a
/// JPEG's frame header (application data, tables) are rarely more than a few KB.
const FRAME_HEAD: usize = 1 << 20;

/// JPEG 2000 tiles a frame may have. openjp2 sets up every tile before it decodes any,
/// about 9 KB each (measured: a flat 4096x4096 frame in 58,081 tiles of 17x17, 1.6 MB of
/// file, peaked at 627 MB); 4,096 tiles cost about 40 MB. Encoders write one tile unless
/// told otherwise (OpenJPEG's `opj_compress`), and a 4300x3500 detector cut into 256 px
/// tiles has 238.
const MAX_TILES: u64 = 4096;

/// A compressed frame must declare the size and the number of components its DICOM header
/// does, and a JPEG 2000 frame a bounded number of tiles (`codestream`): the decoders
/// allocate for the frame's own, which the pixel limit has not bounded.
fn check_frame_header(obj: &DefaultDicomObject, rows: u64, columns: u64, samples: u64) -> Result<(), Refusal> {
    let Some(fragments) = obj
        .element_opt(tags::PIXEL_DATA)
        .ok()
        .flatten()
        .and_then(|e| e.value().fragments())
    else {
        return Ok(()); // native pixel data, or none (refused later with its reason)
    };
    let mut head = Vec::new();
    for fragment in fragments {
        let room = FRAME_HEAD - head.len();
        head.extend_from_slice(&fragment[..fragment.len().min(room)]);
        if head.len() == FRAME_HEAD {
            break;
        }
    }
    let frame = match codestream::frame_header(&head) {
        Ok(Some(frame)) => frame,
        Ok(None) => return Ok(()),
        Err(e) => return Err(format!("DICOM compressed frame is unreadable: {e}").into()),
    };
    let (w, h) = (frame.width, frame.height);
    if (u64::from(w), u64::from(h)) != (columns, rows) {
        return Err(format!(
            "DICOM says {columns}x{rows} pixels but its compressed frame declares {w}x{h}: a damaged or forged file"
        )
        .into());
    }
    if u64::from(frame.components) != samples {
        return Err(format!(
            "DICOM says {samples} samples per pixel but its compressed frame declares {} components: a damaged or forged file",
            frame.components
        )
        .into());
    }
    if frame.tiles > MAX_TILES {
        return Err(format!(
            "DICOM's JPEG 2000 frame is cut into {} tiles, more than the {MAX_TILES} ptxd decodes (each costs memory before any is decoded): a damaged or hostile file",
            frame.tiles
        )
        .into());
    }
    Ok(())
}

/// Replace a 12-bit extended JPEG object's compressed frame with its decoded samples, as
/// native (explicit VR little endian) pixel data, so that the rest of the way (modality LUT,
/// window, MONOCHROME1, signed samples) is dicom-pixeldata's, the same as for every other
/// syntax. jpeg-decoder, dicom-rs's JPEG decoder, reads 8-bit DCT only: a 12-bit frame
/// failed in it as "Could not decode pixel data", which read as a damaged file.
fn decode_jpeg12_in_place(
    obj: &mut DefaultDicomObject,
    rows: u64,
    columns: u64,
    limits: Limits,
) -> Result<(), Refusal> {
    let samples: u64 = int_attr(obj, tags::SAMPLES_PER_PIXEL, "Samples per Pixel").unwrap_or(1);
    if samples != 1 {
        return Err(Refusal::unsupported(format!(
            "DICOM is 12-bit extended JPEG with {samples} samples per pixel; ptxd reads grey 12-bit JPEG only"
        )));
    }
    let pixel_data = obj
        .element(tags::PIXEL_DATA)
        .map_err(|_| "DICOM has no Pixel Data".to_string())?;
    let Some(fragments) = pixel_data.value().fragments() else {
        return Err("DICOM says extended JPEG but its Pixel Data is not encapsulated"
            .to_string()
            .into());
    };
    // one frame (checked by the caller): its fragments, in order, are the JPEG stream
    let jpeg: Vec<u8> = fragments.iter().flatten().copied().collect();
    let grey = jpeg12::decode(&jpeg, limits.max_pixels)
        .map_err(|e| format!("DICOM 12-bit extended JPEG cannot be decoded: {e}"))?;
    if (grey.width as u64, grey.height as u64) != (columns, rows) {
        return Err(format!(
            "DICOM says {columns}x{rows} pixels but its 12-bit JPEG holds {}x{}",
            grey.width, grey.height
        )
        .into());
    }
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(grey.samples.into()),
    ));
    obj.put(DataElement::new(
        tags::BITS_ALLOCATED,
        VR::US,
        PrimitiveValue::from(16_u16),
    ));
    obj.meta_mut()
        .set_transfer_syntax(&dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN);
    Ok(())
}

/// A required integer attribute; a DICOM object without it is valid but not an image (a
/// report, a presentation state): `unsupported`, not damaged.
fn int_attr(obj: &DefaultDicomObject, tag: dicom_object::Tag, name: &str) -> Result<u64, Refusal> {
    let element = obj
        .element(tag)
        .map_err(|_| Refusal::unsupported(format!("DICOM has no {name}: not an image")))?;
    Ok(element
        .to_int::<u64>()
        .map_err(|e| format!("DICOM {name} is not a number: {e}"))?)
}

/// Patient Orientation (0020,0020) names the patient direction of the image's rows (left to
/// right on screen) then of its columns: "L\F" means the viewer's right is the patient's
/// left, i.e. the usual display with the patient's right on the viewer's left.
fn dicom_orientation(obj: &DefaultDicomObject) -> Orientation {
    let rows_toward = obj
        .element_opt(tags::PATIENT_ORIENTATION)
        .ok()
        .flatten()
        .and_then(|e| e.to_multi_str().ok().map(|v| v.to_vec()))
        .and_then(|v| v.first().cloned())
        .unwrap_or_default();
    match rows_toward.trim().chars().next() {
        Some('L') => Orientation {
            patient_right_on_image_left: true,
            from_header: true,
        },
        Some('R') => Orientation {
            patient_right_on_image_left: false,
            from_header: true,
        },
        _ => Orientation::CONVENTION,
    }
}

/// Values after the modality LUT -> 8-bit display values: the VOI window when there is one
/// (DICOM PS3.3 C.11.2.1.2.1, linear), else as-is for 8-bit data, else min-max.
fn to_display(values: &[f32], window: Option<(f64, f64)>, bits_stored: u16) -> Vec<u8> {
    if let Some((center, width)) = window {
        let (c, w) = (center - 0.5, width - 1.0);
        return values
            .iter()
            .map(|&x| {
                let y = if w <= 0.0 {
                    if f64::from(x) <= c {
                        0.0
                    } else {
                        1.0
                    }
                } else {
                    ((f64::from(x) - c) / w + 0.5).clamp(0.0, 1.0)
                };
                (y * 255.0).round() as u8
            })
            .collect();
    }
    if bits_stored <= 8 {
        return values.iter().map(|&x| x.round().clamp(0.0, 255.0) as u8).collect();
    }
    stretch(values.iter().copied())
}

/// Minimum-to-maximum stretch onto 0..=255 (a flat image becomes all zeros).
pub(crate) fn stretch(values: impl Iterator<Item = f32> + Clone) -> Vec<u8> {
    let (lo, hi) = values
        .clone()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let span = (hi - lo).max(f32::MIN_POSITIVE);
    values.map(|v| ((v - lo) / span * 255.0).round() as u8).collect()
}

/// Pillow's `convert('L')`: L = R*299/1000 + G*587/1000 + B*114/1000, in its fixed point.
pub fn pil_luma(r: u8, g: u8, b: u8) -> u8 {
    // Pillow (Convert.c, L24): (r*19595 + g*38470 + b*7471 + 0x8000) >> 16
    ((u32::from(r) * 19595 + u32::from(g) * 38470 + u32::from(b) * 7471 + 0x8000) >> 16) as u8
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
fn check_expansion(decoded: u64, file: usize) -> Result<(), Refusal> {
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

fn check_size(width: u64, height: u64, limits: Limits) -> Result<(), Refusal> {
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

/// What the decoders may allocate besides the pixels: metadata such as a PNG's colour
/// profile (real ones are a few KB, at most about 1 MB), which `png` inflates while it reads
/// the header. Without a bound, a 200 KB file with a 200 MB compressed profile costs 200 MB.
const METADATA_BUDGET: u64 = 8 << 20;

fn decode_picture(bytes: &[u8], limits: Limits) -> Result<(GreyImage, InputFormat), Refusal> {
    let reader = || {
        let mut reader = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| format!("cannot read: {e}"))?;
        let mut budget = image::Limits::default();
        budget.max_alloc = Some(METADATA_BUDGET);
        reader.limits(budget);
        Ok::<_, Refusal>(reader)
    };
    let format = match reader()?.format() {
        Some(image::ImageFormat::Png) => InputFormat::Png,
        Some(image::ImageFormat::Jpeg) => InputFormat::Jpeg,
        Some(image::ImageFormat::Tiff) => InputFormat::Tiff,
        _ => return Err(Refusal::unsupported("not a DICOM, PNG, JPEG or TIFF file".into())),
    };
    let header = reader()?
        .into_decoder()
        .map_err(|e| format!("{format} header cannot be read: {e}"))?;
    let (w, h) = header.dimensions();
    check_size(u64::from(w), u64::from(h), limits)?;
    let pixels = header.total_bytes();
    check_expansion(pixels, bytes.len())?;
    drop(header);
    let mut decoder = reader()?;
    // the TIFF decoder reads into a buffer of its own, then copies: twice the pixels
    let mut budget = image::Limits::default();
    budget.max_alloc = Some(pixels.saturating_mul(2).saturating_add(METADATA_BUDGET));
    decoder.limits(budget);
    let decoded = decoder
        .decode()
        .map_err(|e| format!("{format} data cannot be decoded (truncated or corrupt?): {e}"))?;
    let grey = match decoded {
        DynamicImage::ImageLuma8(g) => g.into_raw(),
        DynamicImage::ImageLumaA8(g) => g.pixels().map(|p| p.0[0]).collect(),
        DynamicImage::ImageLuma16(g) => stretch(g.as_raw().iter().map(|&v| f32::from(v))),
        DynamicImage::ImageLumaA16(g) => stretch(g.pixels().map(|p| f32::from(p.0[0]))),
        DynamicImage::ImageRgb8(c) => c.pixels().map(|p| pil_luma(p.0[0], p.0[1], p.0[2])).collect(),
        DynamicImage::ImageRgba8(c) => c.pixels().map(|p| pil_luma(p.0[0], p.0[1], p.0[2])).collect(),
        DynamicImage::ImageRgb16(_) | DynamicImage::ImageRgba16(_) => {
            let c = decoded.to_rgb8();
            c.pixels().map(|p| pil_luma(p.0[0], p.0[1], p.0[2])).collect()
        }
        other => {
            return Err(Refusal::unsupported(format!(
                "{format} with {:?} pixels is not supported",
                other.color()
            )))
        }
    };
    let image = GreyImage::new(w as usize, h as usize, grey)
        .ok_or_else(|| format!("{format} decoded to fewer pixels than its {w}x{h} header says"))?;
    Ok((image, format))
}

#[cfg(test)]
mod tests {
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
