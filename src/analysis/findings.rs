//! From the models' raw outputs to what a radiographer reads: a verdict and findings.
//!
//! - **Verdict**: `positive` when the classifier's probability reaches the manifest's
//!   threshold; `indeterminate` in the band just below it (`indeterminate_low` up to the
//!   threshold): "have the image read", never "clear"; `negative` below that, which says
//!   only that the model flagged nothing. Both thresholds come from an alarm budget (the
//!   share of clear films that may be flagged, measured out of fold), so a `negative` still
//!   holds some pneumothoraces: models/README.md says how many.
//! - **Mask**: the segmenter's 256x256 probabilities are resized to the input image with
//!   bilinear interpolation (pixel centres aligned, as PyTorch's `align_corners=False`), then
//!   thresholded at the manifest's pixel threshold. Thresholding after resizing keeps the
//!   outline smooth at full resolution.
//! - **Findings**: 8-connected regions of the mask; regions smaller than the manifest's
//!   minimum area (given on the 256 grid, scaled by the image's area) are noise and dropped.
//! - **Inside the lungs**: mask pixels outside the (slightly grown) lung field are dropped
//!   before regions are formed, so no region lies outside the chest (see [`crate::analysis::lungs`]).
//! - **Side**: a region's centroid is left or right of the lungs' midline (the mediastinum,
//!   not the image's centre); the decoder's [`Orientation`] says which side is the patient's
//!   right (DICOM Patient Orientation when present, else the radiographic convention:
//!   patient's right on the viewer's left).
//! - **Area**: percent of the whole image, and percent of that side's lung field.
//!
//! A positive classifier with an empty mask is still positive: the alert stands and the
//! finding says the segmenter could not localise it.

use serde::{Deserialize, Serialize};

use crate::analysis::lungs::LungField;
pub use crate::base::outcome::Verdict;
use crate::pixels::decode::Orientation;

/// Thresholds from the manifest, validated once.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub probability: f32,
    pub indeterminate_low: f32,
    pub pixel: f32,
    /// Minimum region area on the segmenter's grid.
    pub min_area_grid: f32,
    /// The segmenter's grid (width, height).
    pub grid: (usize, usize),
}

impl Thresholds {
    pub fn verdict(&self, probability: f32) -> Verdict {
        if probability >= self.probability {
            Verdict::Positive
        } else if probability >= self.indeterminate_low {
            Verdict::Indeterminate
        } else {
            Verdict::Negative
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Right,
    Left,
}

/// One region of suspected pneumothorax, in input-image pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The patient's side.
    pub side: Side,
    pub area_pixels: u64,
    /// Percent of the whole image.
    pub area_percent_image: f32,
    /// Percent of that side's lung field.
    pub area_percent_side: f32,
    /// [x, y, width, height] in input pixels.
    pub bbox: [u32; 4],
    /// Mean mask probability inside the region.
    pub mean_probability: f32,
}

/// A binary mask at the input image's resolution (0 or 255).
#[derive(Debug, Clone, PartialEq)]
pub struct Mask {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl Mask {
    pub fn is_set(&self, x: usize, y: usize) -> bool {
        self.pixels[y * self.width + x] != 0
    }
    pub fn count(&self) -> usize {
        self.pixels.iter().filter(|&&v| v != 0).count()
    }

    /// The mask as an 8-bit grey PNG (0 and 255).
    pub fn to_png(&self) -> Vec<u8> {
        crate::pixels::grey::grey_png(self.width, self.height, &self.pixels)
    }
}

/// Resize the segmenter's probabilities to `width` x `height`, threshold, keep the regions
/// above the minimum area and describe them. Returns the mask and the findings, largest
/// region first.
pub fn localise(
    grid_probs: &[f32],
    width: usize,
    height: usize,
    orientation: Orientation,
    lungs: &LungField,
    t: &Thresholds,
) -> (Mask, Vec<Finding>) {
    let probs = resize_bilinear(grid_probs, t.grid, (width, height));
    let mut pixels: Vec<u8> = probs
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            let inside = lungs.contains(i % width, i / width, width, height);
            if p >= t.pixel && inside {
                255
            } else {
                0
            }
        })
        .collect();
    let scale = (width * height) as f32 / (t.grid.0 * t.grid.1) as f32;
    let min_area = (t.min_area_grid * scale).ceil() as usize;
    let regions = label_regions(&pixels, width, height);
    let mut findings = Vec::new();
    for region in regions {
        if region.pixels.len() < min_area {
            for &i in &region.pixels {
                pixels[i] = 0;
            }
            continue;
        }
        findings.push(describe(&region, &probs, width, height, orientation, lungs));
    }
    findings.sort_by_key(|f| std::cmp::Reverse(f.area_pixels));
    (Mask { width, height, pixels }, findings)
}

struct Region {
    pixels: Vec<usize>,
}

fn describe(region: &Region, probs: &[f32], width: usize, height: usize, o: Orientation, lungs: &LungField) -> Finding {
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    let (mut sum_x, mut sum_p) = (0f64, 0f64);
    for &i in &region.pixels {
        let (x, y) = (i % width, i / width);
        x0 = x0.min(x);
        y0 = y0.min(y);
        x1 = x1.max(x);
        y1 = y1.max(y);
        sum_x += x as f64 + 0.5;
        sum_p += f64::from(probs[i]);
    }
    let n = region.pixels.len();
    let on_image_left = lungs.on_image_left(sum_x / n as f64, width);
    let side = if on_image_left == o.patient_right_on_image_left {
        Side::Right
    } else {
        Side::Left
    };
    let total = (width * height) as f32;
    Finding {
        side,
        area_pixels: n as u64,
        area_percent_image: 100.0 * n as f32 / total,
        // capped: a collapsed lung can fall partly outside the lung-field model's outline
        area_percent_side: (100.0 * n as f64 / lungs.side_area(on_image_left, width, height).max(1.0)).min(100.0)
            as f32,
        bbox: [x0 as u32, y0 as u32, (x1 - x0 + 1) as u32, (y1 - y0 + 1) as u32],
        mean_probability: (sum_p / n as f64) as f32,
    }
}

/// Bilinear resize with pixel centres aligned (PyTorch `align_corners=False`, OpenCV
/// `INTER_LINEAR` when enlarging): source coordinate = (x + 0.5) * in / out - 0.5, clamped.
pub fn resize_bilinear(src: &[f32], from: (usize, usize), to: (usize, usize)) -> Vec<f32> {
    let (sw, sh) = from;
    let (dw, dh) = to;
    let axis = |out: usize, len_in: usize, len_out: usize| {
        let s = ((out as f32 + 0.5) * len_in as f32 / len_out as f32 - 0.5).max(0.0);
        let i0 = (s.floor() as usize).min(len_in - 1);
        let i1 = (i0 + 1).min(len_in - 1);
        (i0, i1, s - i0 as f32)
    };
    let cols: Vec<_> = (0..dw).map(|x| axis(x, sw, dw)).collect();
    let mut out = Vec::with_capacity(dw * dh);
    for y in 0..dh {
        let (y0, y1, fy) = axis(y, sh, dh);
        let (r0, r1) = (&src[y0 * sw..(y0 + 1) * sw], &src[y1 * sw..(y1 + 1) * sw]);
        for &(x0, x1, fx) in &cols {
            let top = r0[x0] + (r0[x1] - r0[x0]) * fx;
            let bottom = r1[x0] + (r1[x1] - r1[x0]) * fx;
            out.push(top + (bottom - top) * fy);
        }
    }
    out
}

/// 8-connected regions of non-zero pixels, by an explicit-stack flood fill (no recursion,
/// so a huge region cannot overflow the stack).
fn label_regions(pixels: &[u8], width: usize, height: usize) -> Vec<Region> {
    let mut seen = vec![false; pixels.len()];
    let mut regions = Vec::new();
    let mut stack = Vec::new();
    for start in 0..pixels.len() {
        if pixels[start] == 0 || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let mut members = Vec::new();
        while let Some(i) = stack.pop() {
            members.push(i);
            let (x, y) = ((i % width) as isize, (i / width) as isize);
            for dy in -1..=1 {
                for dx in -1..=1 {
                    let (nx, ny) = (x + dx, y + dy);
                    if nx < 0 || ny < 0 || nx >= width as isize || ny >= height as isize {
                        continue;
                    }
                    let j = ny as usize * width + nx as usize;
                    if pixels[j] != 0 && !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        regions.push(Region { pixels: members });
    }
    regions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thresholds() -> Thresholds {
        Thresholds {
            probability: 0.5,
            indeterminate_low: 0.4,
            pixel: 0.5,
            min_area_grid: 4.0,
            grid: (8, 8),
        }
    }

    /// Lung fields from an 8x8 grid of probabilities, no margin.
    fn lungs(probs: &[f32]) -> LungField {
        let t = crate::model::manifest::LungThresholds {
            pixel: 0.5,
            min_fraction: 0.1,
            max_fraction: 1.0,
            min_side_share: 0.2,
            min_contrast: 0.0,
            min_chest: 0.0,
            margin_cells: 0,
        };
        LungField::new(probs, 8, 8, &[0; 64], 1.0, &t)
    }

    /// Lung everywhere on an 8x8 grid (midline at the centre of column 3).
    fn all_lung() -> LungField {
        lungs(&[0.9; 64])
    }

    #[test]
    fn verdict_bands() {
        let t = thresholds();
        assert_eq!(t.verdict(0.5), Verdict::Positive);
        assert_eq!(t.verdict(0.45), Verdict::Indeterminate);
        assert_eq!(t.verdict(0.39), Verdict::Negative);
    }

    #[test]
    fn resize_keeps_constant_fields_and_aligns_centres() {
        let out = resize_bilinear(&[0.25; 4], (2, 2), (5, 3));
        assert!(out.iter().all(|&v| (v - 0.25).abs() < 1e-6));
        // 2 -> 4 along x: centres at -0.25, 0.25, 0.75, 1.25 in source coordinates
        let out = resize_bilinear(&[0.0, 1.0], (2, 1), (4, 1));
        assert_eq!(out, vec![0.0, 0.25, 0.75, 1.0]);
    }

    #[test]
    fn regions_get_side_area_and_box_and_small_ones_are_dropped() {
        // an 8x8 grid: a 3x3 blob on the viewer's left, a single pixel on the right
        let mut grid = vec![0.0f32; 64];
        for y in 1..4 {
            for x in 1..4 {
                grid[y * 8 + x] = 0.9;
            }
        }
        grid[6 * 8 + 6] = 0.9;
        let (mask, findings) = localise(&grid, 8, 8, Orientation::CONVENTION, &all_lung(), &thresholds());
        assert_eq!(findings.len(), 1, "{findings:?}");
        let f = &findings[0];
        assert_eq!(
            f.side,
            Side::Right,
            "viewer's left is the patient's right by convention"
        );
        assert_eq!(f.bbox, [1, 1, 3, 3]);
        assert_eq!(f.area_pixels, 9);
        assert!((f.area_percent_image - 900.0 / 64.0).abs() < 1e-4);
        // of the 24 lung cells left of the midline (the centre of column 3)
        assert!(
            (f.area_percent_side - 900.0 / 24.0).abs() < 1e-3,
            "{}",
            f.area_percent_side
        );
        assert!(!mask.is_set(6, 6), "the one-pixel region is below the minimum area");
        assert_eq!(mask.count(), 9);

        let flipped = Orientation {
            patient_right_on_image_left: false,
            from_header: true,
        };
        let (_, findings) = localise(&grid, 8, 8, flipped, &all_lung(), &thresholds());
        assert_eq!(findings[0].side, Side::Left);
    }

    #[test]
    fn mask_is_at_input_resolution() {
        let mut grid = vec![0.0f32; 64];
        for v in grid.iter_mut().take(32) {
            *v = 1.0; // top half
        }
        let (mask, findings) = localise(&grid, 100, 60, Orientation::CONVENTION, &all_lung(), &thresholds());
        assert_eq!((mask.width, mask.height), (100, 60));
        assert_eq!(findings.len(), 1);
        // top half, minus the blend row at the boundary
        assert!((mask.count() as i64 - 3000).abs() <= 100, "{}", mask.count());
    }

    #[test]
    fn mask_outside_the_lungs_is_dropped_and_side_follows_the_lung_midline() {
        // lungs in columns 0..3 and 5..8 of the rows 2..8 only; the midline is in the gap
        let mut lung = vec![0.0f32; 64];
        for y in 2..8 {
            for x in (0..3).chain(5..8) {
                lung[y * 8 + x] = 0.9;
            }
        }
        let lungs = lungs(&lung);
        let mut grid = vec![0.0f32; 64];
        grid[..8].fill(0.9); // row 0: above the lungs (the neck)
        for y in 3..6 {
            grid[y * 8 + 5] = 0.9; // column 5: just right of the lung midline
        }
        let mut t = thresholds();
        t.min_area_grid = 2.0;
        let (mask, findings) = localise(&grid, 8, 8, Orientation::CONVENTION, &lungs, &t);
        assert_eq!(mask.count(), 3, "the row above the lungs is gone");
        assert_eq!(findings.len(), 1);
        assert_eq!(
            findings[0].side,
            Side::Left,
            "right of the lungs' midline: the patient's left"
        );
        assert!((findings[0].area_percent_side - 100.0 * 3.0 / 18.0).abs() < 1e-3);
    }

    #[test]
    fn empty_mask_gives_no_findings() {
        let (mask, findings) = localise(&[0.1; 64], 16, 16, Orientation::CONVENTION, &all_lung(), &thresholds());
        assert_eq!(mask.count(), 0);
        assert!(findings.is_empty());
    }
}
