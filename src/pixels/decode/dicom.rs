//! DICOM's pixels through dicom-rs: the frame's declared size checked before any codec
//! allocates, the modality LUT, the 12-bit JPEG dicom-rs cannot read, the orientation the
//! header states.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder, VoiLutOption};

use crate::config::Limits;
use crate::pixels::codestream;
use crate::pixels::grey::GreyImage;
use crate::pixels::jpeg12;

use super::display::{pil_luma, to_display};
use super::lengths::check_declared_lengths;
use super::projection::check_projection;
use super::{check_expansion, check_size, guarded, Orientation, Refusal, StudyContext};

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

pub(super) fn decode_dicom(after_preamble: &[u8], limits: Limits) -> Result<(GreyImage, FileHeader), Refusal> {
    with_pixel_data(after_preamble, limits, to_grey)
}

/// What the rest of the pipeline keeps of a DICOM file's header.
pub(super) struct FileHeader {
    pub(super) orientation: Orientation,
    pub(super) study: StudyContext,
}

/// A decoded DICOM frame as display grey: window, MONOCHROME1 inverted, colour to luma.
pub(super) fn to_grey(
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
pub(super) fn with_pixel_data<T>(
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
    // what the header says it is comes before anything its pixels might be
    check_projection(&obj)?;
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
pub(super) fn grey_values(pixels: &dicom_pixeldata::DecodedPixelData<'_>) -> Result<Vec<f32>, Refusal> {
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
pub(super) const FRAME_HEAD: usize = 1 << 20;

/// JPEG 2000 tiles a frame may have. openjp2 sets up every tile before it decodes any,
/// about 9 KB each (measured: a flat 4096x4096 frame in 58,081 tiles of 17x17, 1.6 MB of
/// file, peaked at 627 MB); 4,096 tiles cost about 40 MB. Encoders write one tile unless
/// told otherwise (OpenJPEG's `opj_compress`), and a 4300x3500 detector cut into 256 px
/// tiles has 238.
pub(super) const MAX_TILES: u64 = 4096;

/// A compressed frame must declare the size and the number of components its DICOM header
/// does, and a JPEG 2000 frame a bounded number of tiles (`codestream`): the decoders
/// allocate for the frame's own, which the pixel limit has not bounded.
pub(super) fn check_frame_header(
    obj: &DefaultDicomObject,
    rows: u64,
    columns: u64,
    samples: u64,
) -> Result<(), Refusal> {
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
pub(super) fn decode_jpeg12_in_place(
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
pub(super) fn int_attr(obj: &DefaultDicomObject, tag: dicom_object::Tag, name: &str) -> Result<u64, Refusal> {
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
pub(super) fn dicom_orientation(obj: &DefaultDicomObject) -> Orientation {
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
