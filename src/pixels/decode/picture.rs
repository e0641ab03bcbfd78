//! PNG, JPEG and TIFF through `image`, with the decoders' metadata under a budget.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader};

use crate::config::Limits;
use crate::pixels::grey::GreyImage;

use super::display::{pil_luma, stretch};
use super::{check_expansion, check_size, InputFormat, Refusal};

/// What the decoders may allocate besides the pixels: metadata such as a PNG's colour
/// profile (real ones are a few KB, at most about 1 MB), which `png` inflates while it reads
/// the header. Without a bound, a 200 KB file with a 200 MB compressed profile costs 200 MB.
pub(super) const METADATA_BUDGET: u64 = 8 << 20;

pub(super) fn decode_picture(bytes: &[u8], limits: Limits) -> Result<(GreyImage, InputFormat), Refusal> {
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
    // the JPEG decoder fills what a torn file lacks with grey and says nothing: a film cut
    // off in transfer would get a reading of its top part alone
    if format == InputFormat::Jpeg && !jpeg_has_end(bytes) {
        return Err("JPEG has no end-of-image marker: the file is truncated; send it again".into());
    }
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

/// Whether a JPEG's bytes hold the end-of-image marker after its first scan. Scan data
/// escapes every 0xFF byte (as FF 00), so an FF D9 after the first start-of-scan is the end
/// of the image, not a pixel.
fn jpeg_has_end(bytes: &[u8]) -> bool {
    let marker = |at: &[u8], code: u8| at.windows(2).position(|w| w == [0xFF, code]);
    marker(bytes, 0xDA).is_some_and(|scan| marker(&bytes[scan..], 0xD9).is_some())
}
