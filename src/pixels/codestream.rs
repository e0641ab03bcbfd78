//! What a compressed DICOM frame declares in its own header (JPEG, JPEG-LS, JPEG 2000): its
//! size, its number of components and, for JPEG 2000, its number of tiles, read before any
//! decoder sees the frame.
//!
//! Why: the decoders allocate for what the codestream declares, not for the DICOM header's
//! Rows, Columns and Samples per Pixel, which ptxd bounds (`input.max_pixels`, and the
//! expansion check against the file's size). A 48x48 DICOM image whose lossless JPEG frame
//! claimed 65487x2763 pixels took 1.1 GB in jpeg-decoder (found by the decode fuzz target);
//! 65535x65535 would take 8 GB and get a board's daemon killed. Components multiply the same
//! way (a JPEG-LS or JPEG 2000 header may declare 255 or 16,384 of them), and JPEG 2000's
//! decoder sets up every tile before it decodes one (a few KB each, up to 65,535 of them). A
//! frame that disagrees with its DICOM header is damaged or hostile either way, so the two
//! must agree before decoding.

/// What a frame's header declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Width and height, in pixels.
    pub width: u32,
    pub height: u32,
    /// Colour components (DICOM's Samples per Pixel).
    pub components: u32,
    /// JPEG 2000 tiles; 1 for JPEG, which has none.
    pub tiles: u64,
}

/// What `frame` declares, when it starts like a JPEG (any process, JPEG-LS included) or a
/// JPEG 2000 codestream or JP2 file; None for anything else (RLE and native data have no
/// header of their own to disagree). An error when it starts like one of them but its
/// header cannot be read.
pub fn frame_header(frame: &[u8]) -> Result<Option<FrameHeader>, String> {
    if frame.starts_with(&[0xFF, 0xD8]) {
        return jpeg_header(frame).map(Some);
    }
    if frame.starts_with(&[0xFF, 0x4F, 0xFF, 0x51]) || frame.starts_with(JP2_SIGNATURE) {
        return j2k_header(frame).map(Some);
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
fn jpeg_header(jpeg: &[u8]) -> Result<FrameHeader, String> {
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
                // Lf (2), P (1), Y (2), X (2), Nf (1)
                let (Some(height), Some(width), Some(&components)) =
                    (be16(jpeg, at + 5), be16(jpeg, at + 7), jpeg.get(at + 9))
                else {
                    return Err("JPEG frame header is cut short".into());
                };
                return Ok(FrameHeader {
                    width,
                    height,
                    components: u32::from(components),
                    tiles: 1,
                });
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

/// A JPEG 2000 image's header from its SIZ marker segment (ISO 15444-1 A.5.1): the size is
/// the reference grid (Xsiz, Ysiz) less the image offset (XOsiz, YOsiz); the tiles are the
/// tile grid's (XTsiz by YTsiz from XTOsiz, YTOsiz) over the reference grid. In a JP2 file
/// the codestream follows the boxes; its SOC+SIZ is looked for within the first 64 KB.
fn j2k_header(file: &[u8]) -> Result<FrameHeader, String> {
    let head = &file[..file.len().min(64 << 10)];
    let start = head
        .windows(4)
        .position(|w| w == [0xFF, 0x4F, 0xFF, 0x51])
        .ok_or("JPEG 2000 file without a codestream header")?;
    // SOC (2), SIZ marker (2), Lsiz (2), Rsiz (2), then Xsiz Ysiz XOsiz YOsiz XTsiz YTsiz
    // XTOsiz YTOsiz (4 each) and Csiz (2)
    let siz = start + 8;
    let cut = "JPEG 2000 SIZ segment is cut short";
    let field = |i: usize| be32(file, siz + 4 * i).ok_or(cut);
    let (x, y, x0, y0) = (field(0)?, field(1)?, field(2)?, field(3)?);
    let (tx, ty, tx0, ty0) = (field(4)?, field(5)?, field(6)?, field(7)?);
    let components = be16(file, siz + 32).ok_or(cut)?;
    // A.5.1's constraints; a decoder refuses the rest, but only after it has allocated
    if x0 >= x || y0 >= y || tx == 0 || ty == 0 || tx0 > x0 || ty0 > y0 {
        return Err(format!(
            "JPEG 2000 SIZ segment is inconsistent (grid {x}x{y}, offset {x0},{y0}, tiles {tx}x{ty} from {tx0},{ty0})"
        ));
    }
    let across = u64::from(x - tx0).div_ceil(u64::from(tx));
    let down = u64::from(y - ty0).div_ceil(u64::from(ty));
    Ok(FrameHeader {
        width: x - x0,
        height: y - y0,
        components,
        tiles: across * down,
    })
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
        let header = frame_header(&jpeg(37, 21)).unwrap().unwrap();
        assert_eq!(
            (header.width, header.height, header.components, header.tiles),
            (37, 21, 1, 1)
        );
    }

    #[test]
    fn a_lossless_or_jpeg_ls_frame_header_is_read_as_well() {
        // SOI, then SOF3 (lossless) or SOF55 (JPEG-LS): Lf 11, P 16, Y 2763, X 65487, Nf 3
        for sof in [0xC3, 0xF7] {
            let frame = [0xFF, 0xD8, 0xFF, sof, 0, 11, 16, 0x0A, 0xCB, 0xFF, 0xCF, 3, 1, 0x11, 0];
            let header = frame_header(&frame).unwrap().unwrap();
            assert_eq!((header.width, header.height, header.components), (65487, 2763, 3));
        }
    }

    #[test]
    fn a_jpeg_2000_codestream_declares_its_grid_less_its_offset_and_its_tiles() {
        // grid 600x500 from (100, 50), tiles of 128x100 from (0, 0), 3 components
        let codestream = siz([600, 500, 100, 50, 128, 100, 0, 0], 3);
        let expected = FrameHeader {
            width: 500,
            height: 450,
            components: 3,
            tiles: 5 * 5,
        };
        assert_eq!(frame_header(&codestream), Ok(Some(expected)));
        let jp2 = [
            JP2_SIGNATURE,
            &[0x0D, 0x0A, 0x87, 0x0A, 0, 0, 0, 8, b'j', b'p', b'2', b'c'],
            &codestream,
        ]
        .concat();
        assert_eq!(frame_header(&jp2), Ok(Some(expected)));
        // no tile may be empty of the grid, nor a tile 0 wide
        for bad in [[600, 500, 100, 50, 0, 100, 0, 0], [600, 500, 100, 50, 128, 100, 101, 0]] {
            assert!(frame_header(&siz(bad, 1)).unwrap_err().contains("inconsistent"));
        }
    }

    /// SOC and a SIZ segment with these eight 32-bit fields and `components`.
    fn siz(fields: [u32; 8], components: u16) -> Vec<u8> {
        let mut siz = vec![0xFF, 0x4F, 0xFF, 0x51, 0, 41, 0, 0];
        siz.extend(fields.iter().flat_map(|v| v.to_be_bytes()));
        siz.extend(components.to_be_bytes());
        siz
    }

    #[test]
    fn cut_or_unknown_streams_are_errors_or_none() {
        assert!(frame_header(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 200]).is_err());
        assert!(frame_header(&[0xFF, 0xD8, 0xFF, 0xDA, 0, 2]).is_err());
        assert!(frame_header(&[0xFF, 0xD8, 0xFF, 0xC0, 0, 11, 8, 0, 1, 0, 1]).is_err());
        assert!(frame_header(&[0xFF, 0x4F, 0xFF, 0x51, 0, 41]).is_err());
        assert!(frame_header(&siz([600, 500, 0, 0, 600, 500, 0, 0], 1)[..40]).is_err());
        assert_eq!(frame_header(&[0, 0, 0, 1, 0, 0, 0, 64]), Ok(None));
        assert_eq!(frame_header(&[]), Ok(None));
    }
}
