//! 12-bit JPEG (DICOM's "JPEG extended", process 4), decoded through libjpeg-turbo 3.
//!
//! dicom-rs decodes JPEG with jpeg-decoder, which reads 8-bit DCT and lossless JPEG only;
//! CR readers and digitizers that send lossy JPEG send 12-bit samples. libjpeg-turbo is the
//! reference implementation (the one dcmtk and pydicom's peers agree with); `turbojpeg-sys`
//! builds the release it vendors (3.1) from source, statically, so the aarch64 binary stays
//! self-contained and Debian's older libjpeg-turbo 2.1 (8-bit API only) is never involved.
//!
//! The `unsafe` here is the FFI and nothing else: one handle, one header read, one decode
//! into a buffer whose size this module computes from the header it has checked.

use turbojpeg_sys as tj;

/// A decoded 12-bit grey JPEG: samples 0..=4095, row by row.
#[derive(Debug)]
pub struct Grey12 {
    pub width: usize,
    pub height: usize,
    pub samples: Vec<u16>,
}

/// A TurboJPEG decompressor, destroyed on drop (also on an early return).
struct Decompressor(tj::tjhandle);

impl Decompressor {
    fn new() -> Result<Decompressor, String> {
        // SAFETY: tj3Init has no preconditions; a null handle is its failure.
        let handle = unsafe { tj::tj3Init(tj::TJINIT_TJINIT_DECOMPRESS as i32) };
        match handle.is_null() {
            true => Err("libjpeg-turbo could not start a decompressor (out of memory?)".into()),
            false => Ok(Decompressor(handle)),
        }
    }

    fn set(&self, param: tj::TJPARAM, value: i32) -> Result<(), String> {
        // SAFETY: the handle is live (owned by self).
        match unsafe { tj::tj3Set(self.0, param as i32, value) } {
            0 => Ok(()),
            _ => Err(self.error()),
        }
    }

    fn get(&self, param: tj::TJPARAM) -> i32 {
        // SAFETY: the handle is live.
        unsafe { tj::tj3Get(self.0, param as i32) }
    }

    /// libjpeg-turbo's own words for its last error.
    fn error(&self) -> String {
        // SAFETY: tj3GetErrorStr returns a NUL-terminated string owned by the handle, valid
        // until the next call on it; it is copied at once.
        unsafe { std::ffi::CStr::from_ptr(tj::tj3GetErrorStr(self.0)) }
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once.
        unsafe { tj::tj3Destroy(self.0) }
    }
}

/// Decode one grey JPEG frame with 9 to 12 bits per sample. `max_pixels` bounds what
/// libjpeg-turbo allocates before it reads a scan (a header may declare any size).
///
/// Warnings are errors: libjpeg-turbo would otherwise fill a truncated or corrupt scan
/// with grey and call it done, and a half-grey chest is not a radiograph to judge.
pub fn decode(jpeg: &[u8], max_pixels: u64) -> Result<Grey12, String> {
    let d = Decompressor::new()?;
    d.set(tj::TJPARAM_TJPARAM_STOPONWARNING, 1)?;
    d.set(tj::TJPARAM_TJPARAM_MAXPIXELS, max_pixels.min(i32::MAX as u64) as i32)?;
    // a progressive file may hold thousands of tiny scans, each a full pass over the image
    d.set(tj::TJPARAM_TJPARAM_SCANLIMIT, 64)?;
    // SAFETY: the pointer and length describe `jpeg`, which outlives the call.
    if unsafe { tj::tj3DecompressHeader(d.0, jpeg.as_ptr(), jpeg.len() as tj::size_t) } != 0 {
        return Err(format!("JPEG header unreadable: {}", d.error()));
    }
    let (width, height) = (
        d.get(tj::TJPARAM_TJPARAM_JPEGWIDTH),
        d.get(tj::TJPARAM_TJPARAM_JPEGHEIGHT),
    );
    let precision = d.get(tj::TJPARAM_TJPARAM_PRECISION);
    if !(9..=12).contains(&precision) {
        return Err(format!("JPEG has {precision}-bit samples; expected 9 to 12"));
    }
    if d.get(tj::TJPARAM_TJPARAM_COLORSPACE) != tj::TJCS_TJCS_GRAY as i32 {
        return Err("JPEG is colour, not grey".into());
    }
    let (width, height) = match (usize::try_from(width), usize::try_from(height)) {
        (Ok(w), Ok(h)) if w > 0 && h > 0 && (w as u64) * (h as u64) <= max_pixels => (w, h),
        _ => {
            return Err(format!(
                "JPEG declares {width}x{height} pixels, over the limit or empty"
            ))
        }
    };
    let mut samples = vec![0i16; width * height];
    // SAFETY: `samples` holds width*height grey samples, exactly what a pitch-0 TJPF_GRAY
    // decode of this (checked) header writes.
    let status = unsafe {
        tj::tj3Decompress12(
            d.0,
            jpeg.as_ptr(),
            jpeg.len() as tj::size_t,
            samples.as_mut_ptr(),
            0,
            tj::TJPF_TJPF_GRAY,
        )
    };
    if status != 0 {
        return Err(format!("JPEG scan undecodable: {}", d.error()));
    }
    Ok(Grey12 {
        width,
        height,
        // 12-bit samples are 0..=4095: the cast keeps every value
        samples: samples.into_iter().map(|s| s as u16).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_eight_bit_jpeg_are_refused_with_a_reason() {
        let err = decode(b"not a jpeg at all", 1 << 20).unwrap_err();
        assert!(err.contains("header unreadable"), "{err}");
        // an 8-bit baseline JPEG is for jpeg-decoder, not this path
        let mut jpeg = Vec::new();
        image::GrayImage::from_pixel(16, 16, image::Luma([90]))
            .write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
            .unwrap();
        let err = decode(&jpeg, 1 << 20).unwrap_err();
        assert!(err.contains("8-bit samples"), "{err}");
    }
}
