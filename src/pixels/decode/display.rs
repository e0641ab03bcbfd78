//! Decoded values to the 8-bit display grey the models were trained on: the VOI window, or a
//! stretch; colour by Pillow's rule.

/// Values after the modality LUT -> 8-bit display values: the VOI window when there is one
/// (DICOM PS3.3 C.11.2.1.2.1, linear), else as-is for 8-bit data, else min-max.
pub(super) fn to_display(values: &[f32], window: Option<(f64, f64)>, bits_stored: u16) -> Vec<u8> {
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
