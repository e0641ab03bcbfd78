//! The DICOM length walker: every length a file declares checked against the bytes that
//! follow it, before dicom-rs reads a byte of it (dicom-rs reserves a value's declared length
//! first). A deflated data set is inflated under a bound and walked inflated.

use dicom_dictionary_std::uids;
use dicom_object::StandardDataDictionary;

use crate::config::Limits;

use super::{Refusal, EXPANSION_FLOOR, MAX_DEFLATE_EXPANSION};

/// What [`check_declared_lengths`] is inside of.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Frame {
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
pub(super) fn check_declared_lengths(file: &[u8], limits: Limits) -> Result<(), Refusal> {
    let Walked::Deflated { at } = walk_lengths(file, Part::MetaThenDataSet)? else {
        return Ok(());
    };
    // what an uncompressed file within the limits may hold (`read_input`), and no more than
    // a real data set inflates
    let bound = limits.max_file_bytes().min(
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
pub(super) enum Part {
    MetaThenDataSet,
    DataSet,
}

/// How [`walk_lengths`] ended: every element walked, or at a deflated data set starting at
/// byte `at`, which is compressed bytes, not elements, until inflated.
pub(super) enum Walked {
    Whole,
    Deflated { at: usize },
}

pub(super) fn walk_lengths(file: &[u8], part: Part) -> Result<Walked, Refusal> {
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
pub(super) struct Header {
    group: u16,
    element: u16,
    vr: [u8; 2],
    len: u32,
    /// The header's own size: 8 or 12 bytes.
    size: usize,
}

/// The header at `pos`, None when the file is too short for it.
pub(super) fn read_header(file: &[u8], pos: usize, explicit: bool, big_endian: bool) -> Option<Header> {
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
pub(super) fn value_unit(vr: Option<dicom_core::dictionary::VirtualVr>) -> u32 {
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
