//! From an 8-bit grey radiograph to the model's input tensor, exactly as in training.
//!
//! The models were trained on images resized by Pillow's `Image.resize(size, BILINEAR)`.
//! Pillow's resampler is not a textbook bilinear: when shrinking, its triangle filter widens
//! with the scale factor (it antialiases), it works in two passes (horizontal first) with an
//! 8-bit intermediate image, and it uses 22-bit fixed-point weights. [`resize_pil_bilinear`]
//! reproduces that arithmetic bit for bit, so a PNG gives the very pixels Python saw (the
//! reference vectors check this), rather than a resize that is merely close.

use crate::model::manifest::Preprocess;
use crate::pixels::grey::GreyImage;

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output pixel: the first input index, and the fixed-point weights from there on.
struct Coefficients {
    bounds: Vec<(usize, usize)>,
    ksize: usize,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the bilinear (triangle) filter.
fn coefficients(in_size: usize, out_size: usize) -> Coefficients {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 1.0 * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's (int) truncates toward zero, as `as i64` does.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(xmax) {
            let t = ((x + xmin) as f64 - center + 0.5) * ss;
            let w = (1.0 - t.abs()).max(0.0);
            *kx = w;
            ww += w;
        }
        for x in 0..ksize {
            let w = if x < xmax && ww != 0.0 { k[x] / ww } else { 0.0 };
            let fixed = w * (1u32 << PRECISION_BITS) as f64;
            weights[xx * ksize + x] = if w < 0.0 {
                (-0.5 + fixed) as i32
            } else {
                (0.5 + fixed) as i32
            };
        }
        bounds.push((xmin, xmax));
    }
    Coefficients { bounds, ksize, weights }
}

fn clip8(v: i32) -> u8 {
    if v <= 0 {
        0
    } else if v >= (255 << PRECISION_BITS) + ((1 << PRECISION_BITS) - 1) {
        255
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

fn dot(row: impl Iterator<Item = u8>, weights: &[i32]) -> u8 {
    let mut acc: i32 = 1 << (PRECISION_BITS - 1);
    for (p, w) in row.zip(weights) {
        acc = acc.wrapping_add(p as i32 * w);
    }
    clip8(acc)
}

/// Pillow-exact `Image.resize((width, height), Image.BILINEAR)` of an 8-bit grey image.
pub fn resize_pil_bilinear(src: &GreyImage, width: usize, height: usize) -> GreyImage {
    if src.width == width && src.height == height {
        return src.clone();
    }
    let h = coefficients(src.width, width);
    let v = coefficients(src.height, height);
    // Horizontal pass over just the rows the vertical pass reads, as Pillow does.
    let first = v.bounds[0].0;
    let last = v.bounds[height - 1].0 + v.bounds[height - 1].1;
    let need_h = src.width != width;
    let temp = if need_h {
        let mut t = vec![0u8; width * (last - first)];
        for y in first..last {
            let row = &src.pixels[y * src.width..(y + 1) * src.width];
            for (xx, &(xmin, xlen)) in h.bounds.iter().enumerate() {
                let w = &h.weights[xx * h.ksize..xx * h.ksize + xlen];
                t[(y - first) * width + xx] = dot(row[xmin..xmin + xlen].iter().copied(), w);
            }
        }
        GreyImage {
            width,
            height: last - first,
            pixels: t,
        }
    } else {
        GreyImage {
            width,
            height: last - first,
            pixels: src.pixels[first * width..last * width].to_vec(),
        }
    };
    if src.height == height {
        return temp;
    }
    let mut out = vec![0u8; width * height];
    for (yy, &(ymin, ylen)) in v.bounds.iter().enumerate() {
        let w = &v.weights[yy * v.ksize..yy * v.ksize + ylen];
        let y0 = ymin - first;
        for xx in 0..width {
            out[yy * width + xx] = dot((y0..y0 + ylen).map(|y| temp.pixels[y * width + xx]), w);
        }
    }
    GreyImage {
        width,
        height,
        pixels: out,
    }
}

/// The model input for an image of any size: resized to the manifest's size, then
/// [`to_tensor`].
pub fn model_input(image: &GreyImage, p: &Preprocess) -> Vec<f32> {
    to_tensor(&resize_pil_bilinear(image, p.width, p.height), p)
}

/// The model input: resized grey, scaled to 0..1, standardised, replicated to `channels`
/// planes, NCHW with N = 1.
pub fn to_tensor(resized: &GreyImage, p: &Preprocess) -> Vec<f32> {
    let plane: Vec<f32> = resized
        .pixels
        .iter()
        .map(|&v| (v as f32 / p.scale - p.mean) / p.std)
        .collect();
    let mut out = Vec::with_capacity(plane.len() * p.channels);
    for _ in 0..p.channels {
        out.extend_from_slice(&plane);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (i, o) in [(512, 256), (1024, 256), (300, 256), (256, 512), (3000, 256)] {
            let c = coefficients(i, o);
            for xx in 0..o {
                let s: i32 = c.weights[xx * c.ksize..(xx + 1) * c.ksize].iter().sum();
                assert!(
                    (s - (1 << PRECISION_BITS)).abs() <= c.ksize as i32,
                    "{i}->{o} at {xx}: {s}"
                );
            }
        }
    }

    #[test]
    fn flat_image_stays_flat() {
        let img = GreyImage::new(640, 480, vec![137; 640 * 480]).unwrap();
        let out = resize_pil_bilinear(&img, 256, 256);
        assert!(out.pixels.iter().all(|&v| v == 137));
    }

    #[test]
    fn exact_halving_averages_pairs() {
        // Pillow's bilinear at exactly 2x uses taps 1/8, 3/8, 3/8, 1/8; on a step edge the
        // output shows that ramp rather than a hard cut.
        let mut px = vec![0u8; 8 * 2];
        for y in 0..2 {
            for x in 4..8 {
                px[y * 8 + x] = 200;
            }
        }
        let out = resize_pil_bilinear(&GreyImage::new(8, 2, px).unwrap(), 4, 1);
        assert_eq!(out.pixels, vec![0, 25, 175, 200]);
    }

    #[test]
    fn same_size_is_identity() {
        let img = GreyImage::new(3, 2, vec![1, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(resize_pil_bilinear(&img, 3, 2), img);
    }
}
