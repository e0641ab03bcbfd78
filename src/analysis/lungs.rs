//! The lung fields: where the lungs are, whether the image is a chest radiograph at all, and
//! what a finding's side and size are relative to the lungs.
//!
//! The lung-field model (a small UNet++, run at 128 px) gives a probability per grid cell.
//! Thresholded at the manifest's `pixel`, that is the [`LungField`]. From it:
//!
//! - **Not a chest radiograph** ([`LungField::check`]): a blank frame has no contrast; a
//!   photo, a drawing, a test pattern or a CT slice does not look like a chest film to the
//!   lung file's second output (a chest-or-not head on the same encoder pass, so it costs
//!   nothing extra); a frontal chest film shows two lung fields covering a known share of the
//!   image, one on each side of the mediastinum. The limits (`min_contrast`, `min_chest`,
//!   `min_fraction`, `max_fraction`, `min_side_share`) are chosen in `models/training`
//!   (`ptx_training.gate`) so that no real radiograph in the shared data is refused, with a
//!   margin; `models/README.md` gives the measured rates. The lung-field limits catch little
//!   today (the lung model misses the lungs of a few real films, so they sit wide open); the
//!   contrast and chest-or-not limits do the work.
//! - **Midline**: the column with the fewest lung cells in the middle half of the image (the
//!   mediastinum), nearest the lung cells' median column among equals. A finding's side is
//!   its centroid against this midline, not the image's: an off-centre patient keeps the
//!   right answer.
//! - **Inside the lungs**: the field grown by `margin_cells` (a pneumothorax lies at the
//!   periphery, where the lung-field masks are tight). Mask pixels outside it are dropped.
//! - **Area**: a region's share of that side's lung field, in input pixels.

use serde::{Deserialize, Serialize};

use crate::model::manifest::LungThresholds;

/// The lung fields on the model's grid.
#[derive(Debug, Clone, PartialEq)]
pub struct LungField {
    width: usize,
    height: usize,
    /// Lung cells (probability >= the pixel threshold).
    cells: Vec<bool>,
    /// Lung cells grown by the margin: what counts as "inside the lungs" for a finding.
    grown: Vec<bool>,
    /// The mediastinum's column on the grid, in cell units (a finding left of it is on the
    /// image's left lung).
    midline: f32,
    /// Lung cells left and right of the midline (image left, image right).
    counts: (usize, usize),
    /// Standard deviation of the grey levels the model saw (a blank frame has almost none).
    contrast: f32,
    /// The lung file's chest-or-not probability: does the image look like a frontal chest
    /// radiograph at all?
    chest: f32,
}

/// Why an image is not taken for a frontal chest radiograph. The text says what was seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NotChest {
    #[error("the image is {width}x{height} pixels, smaller than the {min}x{min} the classifier reads: too small to be a radiograph the models can read")]
    TooSmall { width: usize, height: usize, min: usize },
    #[error("the image is almost uniform (grey-level spread {contrast:.1}, a radiograph has at least {min:.0}): a blank or dark frame")]
    Blank { contrast: f32, min: f32 },
    #[error("the image does not look like a frontal chest radiograph (chest-likeness {score:.2}, real radiographs score at least {min:.2}): a photo, a drawing, a test pattern or another kind of scan")]
    NotChestLike { score: f32, min: f32 },
    #[error("no lung fields found (they cover {percent:.1}% of the image, a chest radiograph {min:.0}-{max:.0}%)")]
    TooLittleLung { percent: f32, min: f32, max: f32 },
    #[error("what looks like lung covers {percent:.1}% of the image (a chest radiograph {min:.0}-{max:.0}%)")]
    TooMuchLung { percent: f32, min: f32, max: f32 },
    #[error("lung field on one side only (the smaller side holds {percent:.0}% of it, two lungs at least {min:.0}%)")]
    OneSided { percent: f32, min: f32 },
}

impl NotChest {
    /// A few words for a small screen.
    pub fn short(&self) -> &'static str {
        match self {
            NotChest::TooSmall { .. } => "too small",
            NotChest::Blank { .. } => "a blank frame",
            NotChest::NotChestLike { .. } => "not a chest film",
            NotChest::TooLittleLung { .. } => "no lung fields",
            NotChest::TooMuchLung { .. } => "no chest outline",
            NotChest::OneSided { .. } => "one lung field only",
        }
    }
}

impl LungField {
    /// Threshold the model's `probs` (`width` x `height`, row-major) and measure the field;
    /// `grey` is the resized image the model read (for its contrast), `chest` the file's
    /// chest-or-not probability.
    pub fn new(probs: &[f32], width: usize, height: usize, grey: &[u8], chest: f32, t: &LungThresholds) -> LungField {
        assert_eq!(probs.len(), width * height, "lung grid size");
        let cells: Vec<bool> = probs.iter().map(|&p| p >= t.pixel).collect();
        let grown = grow(&cells, width, height, t.margin_cells);
        let midline = midline(&cells, width);
        let mut counts = (0, 0);
        for (i, _) in cells.iter().enumerate().filter(|(_, &c)| c) {
            if ((i % width) as f32 + 0.5) < midline {
                counts.0 += 1;
            } else {
                counts.1 += 1;
            }
        }
        let n = grey.len().max(1) as f64;
        let mean = grey.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = grey.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
        LungField {
            width,
            height,
            cells,
            grown,
            midline,
            counts,
            contrast: var.sqrt() as f32,
            chest,
        }
    }

    /// Share of the image covered by lung, 0..1.
    pub fn fraction(&self) -> f32 {
        (self.counts.0 + self.counts.1) as f32 / (self.width * self.height) as f32
    }

    /// The smaller side's share of the lung cells, 0..0.5.
    pub fn side_share(&self) -> f32 {
        let total = self.counts.0 + self.counts.1;
        if total == 0 {
            return 0.0;
        }
        self.counts.0.min(self.counts.1) as f32 / total as f32
    }

    pub fn contrast(&self) -> f32 {
        self.contrast
    }

    /// The chest-or-not probability, 0..1.
    pub fn chest(&self) -> f32 {
        self.chest
    }

    /// Is this a frontal chest radiograph? The first limit it fails, or Ok.
    pub fn check(&self, t: &LungThresholds) -> Result<(), NotChest> {
        let percent = 100.0 * self.fraction();
        let (min, max) = (100.0 * t.min_fraction, 100.0 * t.max_fraction);
        if self.contrast < t.min_contrast {
            Err(NotChest::Blank {
                contrast: self.contrast,
                min: t.min_contrast,
            })
        } else if self.chest < t.min_chest {
            Err(NotChest::NotChestLike {
                score: self.chest,
                min: t.min_chest,
            })
        } else if self.fraction() < t.min_fraction {
            Err(NotChest::TooLittleLung { percent, min, max })
        } else if self.fraction() > t.max_fraction {
            Err(NotChest::TooMuchLung { percent, min, max })
        } else if self.side_share() < t.min_side_share {
            Err(NotChest::OneSided {
                percent: 100.0 * self.side_share(),
                min: 100.0 * t.min_side_share,
            })
        } else {
            Ok(())
        }
    }

    /// The grid cell under input pixel (x, y) of an image `w` x `h`.
    fn cell(&self, x: usize, y: usize, w: usize, h: usize) -> usize {
        let gx = (x * self.width / w).min(self.width - 1);
        let gy = (y * self.height / h).min(self.height - 1);
        gy * self.width + gx
    }

    /// No lung cell at all: the model missed the lungs of a film that still passed the check
    /// (measured on a few over- or under-exposed real films). Then nothing is clipped and the
    /// image's halves stand in for the lungs, rather than dropping every finding.
    pub fn is_empty(&self) -> bool {
        self.counts.0 + self.counts.1 == 0
    }

    /// Whether input pixel (x, y) of a `w` x `h` image is inside the (grown) lung field
    /// (everywhere, when the field is empty).
    pub fn contains(&self, x: usize, y: usize, w: usize, h: usize) -> bool {
        self.is_empty() || self.grown[self.cell(x, y, w, h)]
    }

    /// Whether a column `x` of a `w`-wide image lies on the image's left of the midline.
    pub fn on_image_left(&self, x: f64, w: usize) -> bool {
        x * (self.width as f64) / (w as f64) < f64::from(self.midline)
    }

    /// The lung area on the image's left or right side, in pixels of a `w` x `h` image (half
    /// the image when the field is empty).
    pub fn side_area(&self, image_left: bool, w: usize, h: usize) -> f64 {
        if self.is_empty() {
            return (w * h) as f64 / 2.0;
        }
        let cells = if image_left { self.counts.0 } else { self.counts.1 };
        cells as f64 * (w * h) as f64 / (self.width * self.height) as f64
    }
}

/// The column of fewest lung cells in the middle half of the grid (the mediastinum lies
/// there on any frontal chest film); among equals, the one nearest the lung cells' median
/// column, so that the midline sits in the gap between the lungs, and a single lung field
/// stays on one side of it. The grid's centre when there is no lung.
fn midline(cells: &[bool], width: usize) -> f32 {
    let mut per_column = vec![0usize; width];
    for (i, _) in cells.iter().enumerate().filter(|(_, &c)| c) {
        per_column[i % width] += 1;
    }
    let total: usize = per_column.iter().sum();
    if total == 0 {
        return width as f32 / 2.0;
    }
    let mut seen = 0;
    let median = per_column
        .iter()
        .position(|&n| {
            seen += n;
            seen * 2 >= total
        })
        .unwrap_or(width / 2) as f32;
    let best = (width / 4..=(3 * width / 4).min(width - 1))
        .min_by(|&a, &b| {
            (per_column[a], (a as f32 - median).abs())
                .partial_cmp(&(per_column[b], (b as f32 - median).abs()))
                .expect("finite")
        })
        .unwrap_or(width / 2);
    best as f32 + 0.5
}

/// Grow a grid mask by `r` cells (a square structuring element), in two separable passes.
fn grow(cells: &[bool], width: usize, height: usize, r: usize) -> Vec<bool> {
    let mut rows = vec![false; cells.len()];
    for y in 0..height {
        for x in 0..width {
            let (a, b) = (x.saturating_sub(r), (x + r).min(width - 1));
            rows[y * width + x] = (a..=b).any(|k| cells[y * width + k]);
        }
    }
    let mut out = vec![false; cells.len()];
    for y in 0..height {
        let (a, b) = (y.saturating_sub(r), (y + r).min(height - 1));
        for x in 0..width {
            out[y * width + x] = (a..=b).any(|k| rows[k * width + x]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thresholds() -> LungThresholds {
        LungThresholds {
            pixel: 0.5,
            min_fraction: 0.1,
            max_fraction: 0.6,
            min_side_share: 0.2,
            min_contrast: 10.0,
            min_chest: 0.4,
            margin_cells: 1,
        }
    }

    /// A 16x16 grid with two lung blocks, columns 2..6 and 10..14, rows 3..13.
    fn two_lungs() -> Vec<f32> {
        let mut p = vec![0.0; 256];
        for y in 3..13 {
            for x in (2..6).chain(10..14) {
                p[y * 16 + x] = 0.9;
            }
        }
        p
    }

    fn varied() -> Vec<u8> {
        (0..256).map(|i| (i % 256) as u8).collect()
    }

    #[test]
    fn two_lungs_pass_and_the_midline_is_between_them() {
        let f = LungField::new(&two_lungs(), 16, 16, &varied(), 0.9, &thresholds());
        assert_eq!(f.check(&thresholds()), Ok(()));
        assert!((6.0..=10.0).contains(&f.midline), "{}", f.midline);
        assert!((f.side_share() - 0.5).abs() < 1e-6);
        assert!((f.fraction() - 80.0 / 256.0).abs() < 1e-6);
        // a 160x160 image: each lung is 40 cells of 100 pixels
        assert_eq!(f.side_area(true, 160, 160), 4000.0);
        assert!(f.on_image_left(50.0, 160) && !f.on_image_left(110.0, 160));
        assert!(f.contains(15, 35, 160, 160), "one cell of margin");
        assert!(!f.contains(0, 0, 160, 160));
    }

    #[test]
    fn refusals_say_what_was_seen() {
        let t = thresholds();
        let blank = LungField::new(&two_lungs(), 16, 16, &[128; 256], 0.9, &t);
        assert!(matches!(blank.check(&t), Err(NotChest::Blank { .. })));
        let photo = LungField::new(&two_lungs(), 16, 16, &varied(), 0.39, &t);
        let err = photo.check(&t).unwrap_err();
        assert!(matches!(err, NotChest::NotChestLike { .. }), "{err:?}");
        assert!(err.to_string().contains("chest-likeness 0.39"), "{err}");
        let none = LungField::new(&[0.1; 256], 16, 16, &varied(), 0.9, &t);
        let err = none.check(&t).unwrap_err();
        assert!(err.to_string().starts_with("no lung fields found"), "{err}");
        assert!(none.contains(0, 0, 160, 160), "an empty field clips nothing");
        assert_eq!(none.side_area(true, 160, 160), 160.0 * 80.0);
        let all = LungField::new(&[0.9; 256], 16, 16, &varied(), 0.9, &t);
        assert!(matches!(all.check(&t), Err(NotChest::TooMuchLung { .. })));
        let mut one = two_lungs();
        for y in 3..13 {
            for x in 10..14 {
                one[y * 16 + x] = 0.0;
            }
        }
        let one = LungField::new(&one, 16, 16, &varied(), 0.9, &t);
        assert!(
            matches!(one.check(&t), Err(NotChest::OneSided { .. })),
            "{:?}",
            one.check(&t)
        );
    }
}
