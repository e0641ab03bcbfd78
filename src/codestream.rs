//! The size a compressed DICOM frame declares in its own header (JPEG, JPEG-LS, JPEG 2000),
//! read before any decoder sees the frame.
//!
//! Why: the decoders allocate for the size the codestream declares, not for the DICOM
//! header's Rows and Columns, which ptxd bounds (`input.max_pixels`). A 48x48 DICOM image
//! whose lossless JPEG frame claimed 65487x2763 pixels took 1.1 GB in jpeg-decoder (found by
//! the decode fuzz target); 65535x65535 would take 8 GB and get a board's daemon killed. A
//! frame that disagrees with its DICOM header is damaged or hostile either way, so the two
//! must agree before decoding.

/// Width and height, in pixels.
pub type Size = (u32, u32);

/// The size `frame` declares, when it starts like a JPEG (any process, JPEG-LS included)
/// or a JPEG 2000 codestream or JP2 file; None for anything else (RLE and native data have
/// no header of their own to disagree). An error when it starts like one of them but its
/// header cannot be read.
pub fn declared_size(frame: &[u8]) -> Result<Option<Size>, String> {
    if frame.starts_with(&[0xFF, 0xD8]) {
        return jpeg_size(frame).map(Some);
    }
    if frame.starts_with(&[0xFF, 0x4F, 0xFF, 0x51]) || frame.starts_with(JP2_SIGNATURE) {
        return j2k_size(frame).map(Some);
    }
    Ok(None)
}

/// The first box of a JP2 file (ISO 15444-1 I.5.1).
const JP2_SIGNATURE: &[u8] = &[0, 0, 0, 0x0C, b'j', b'P', b' ', b' '];

fn be16(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?)))
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// A JPEG's frame header (SOFn, ITU T.81 B.2.2; JPEG-LS's SOF55 has the same layout):
/// markers are walked from SOI to the first SOF, each segment skipped by its length.
fn jpeg_size(jpeg: &[u8]) -> Result<Size, String> {
    let mut at = 2;
    loop {
        // fill bytes (0xFF) may precede a marker
        while jpeg.get(at) == Some(&0xFF) && jpeg.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        let (Some(&0xFF), Some(&marker)) = (jpeg.get(at), jpeg.get(at + 1)) else {
            return Err("JPEG stream ends before its frame header".into());
        };
        match marker {
            // SOF0..SOF15 but DHT (C4), JPG (C8), DAC (CC); SOF55 (JPEG-LS)
            0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF | 0xF7 => {
                let (Some(height), Some(width)) = (be16(jpeg, at + 5), be16(jpeg, at + 7)) else {
                    return Err("JPEG frame header is cut short".into());
                };
                return Ok((width, height));
            }
            0xDA => return Err("JPEG scan starts before any frame header".into()),
            // markers without a segment
            0x01 | 0xD0..=0xD8 => at += 2,
            _ => {
                let length = be16(jpeg, at + 2).ok_or("JPEG stream ends inside a marker segment")?;
                at += 2 + length as usize;
            }
        }
    }
}

/// A JPEG 2000 image's size from its SIZ marker segment (ISO 15444-1 A.5.1): the reference
/// grid (Xsiz, Ysiz) less the image offset (XOsiz, YOsiz). In a JP2 file the codestream
/// follows the boxes; its SOC+SIZ is looked for within the first 64 KB.
fn j2k_size(file: &[u8]) -> Result<Size, String> {
    let head = &file[..file.len().min(64 << 10)];
    let start = head
        .windows(4)
        .position(|w| w == [0xFF, 0x4F, 0xFF, 0x51])
        .ok_or("JPEG 2000 file without a codestream header")?;
    // SOC (2), SIZ marker (2), Lsiz (2), Rsiz (2), then Xsiz Ysiz XOsiz YOsiz
    let siz = start + 8;
    let field = |i: usize| be32(file, siz + 4 * i).ok_or("JPEG 2000 SIZ segment is cut short");
    let (x, y, x0, y0) = (field(0)?, field(1)?, field(2)?, field(3)?);
    if x0 >= x || y0 >= y {
        return Err(format!(
            "JPEG 2000 SIZ segment is inconsistent (grid {x}x{y}, offset {x0},{y0})"
        ));
    }
    Ok((x - x0, y - y0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real baseline JPEG, from `image`'s encoder.
    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let mut out = Vec::new();
        image::GrayImage::from_pixel(w, h, image::Luma([100]))
            .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Jpeg)
            .unwrap();
        out
    }

    #[test]
    fn a_jpeg_declares_its_own_size() {
        assert_eq!(declared_size(&jpeg(37, 21)), Ok(Some((37, 21))));
    }

    #[test]
    fn a_lossless_or_jpeg_ls_frame_header_is_read_as_well() {
        // SOI, then SOF3 (lossless) or SOF55 (JPEG-LS): Lf 11, P 16, Y 2763, X 65487, Nf 1
        for sof in [0xC3, 0xF7] {
            let frame = [0xFF, 0xD8, 0xFF, sof, 0, 11, 16, 0x0A, 0xCB, 0xFF, 0xCF, 1, 1, 0x11, 0];
            assert_eq!(declared_size(&frame), Ok(Some((65487, 2763))));
        }
    }

    #[test]
    fn a_jpeg_2000_codestream_declares_its_grid_less_its_offset() {
        let mut siz = vec![0xFF, 0x4F, 0xFF, 0x51, 0, 41, 0, 0];
        for v in [600u32, 500, 100, 50] {
            siz.extend(v.to_be_bytes());
        }
        assert_eq!(declared_size(&siz), Ok(Some((500, 450))));
        let jp2 = [
            JP2_SIGNATURE,
            &[0x0D, 0x0A, 0x87, 0x0A, 0, 0, 0, 8, b'j', b'p', b'2', b'c'],
            &siz,
        ]
        .concat();
        assert_eq!(declared_size(&jp2), Ok(Some((500, 450))));
    }

    #[test]
    fn cut_or_unknown_streams_are_errors_or_none() {
        assert!(declared_size(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 200]).is_err());
        assert!(declared_size(&[0xFF, 0xD8, 0xFF, 0xDA, 0, 2]).is_err());
        assert!(declared_size(&[0xFF, 0xD8, 0xFF, 0xC0, 0, 11, 8]).is_err());
        assert!(declared_size(&[0xFF, 0x4F, 0xFF, 0x51, 0, 41]).is_err());
        assert_eq!(declared_size(&[0, 0, 0, 1, 0, 0, 0, 64]), Ok(None));
        assert_eq!(declared_size(&[]), Ok(None));
    }
}
