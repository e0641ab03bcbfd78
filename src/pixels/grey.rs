//! The one image type every input becomes: 8-bit grey, row-major.
//!
//! Decoders ([`super::decode`], the capture device) produce it; the models' preprocessing,
//! the findings and the screen read it. It lives below the models so that decoding never
//! depends on them.

/// A grey 8-bit image, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GreyImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl GreyImage {
    /// Wrap a pixel buffer; None when its length does not match the size.
    pub fn new(width: usize, height: usize, pixels: Vec<u8>) -> Option<GreyImage> {
        (width > 0 && height > 0 && pixels.len() == width * height).then_some(GreyImage { width, height, pixels })
    }

    /// The image as an 8-bit grey PNG.
    pub fn to_png(&self) -> Vec<u8> {
        grey_png(self.width, self.height, &self.pixels)
    }
}

/// Encode 8-bit grey pixels (row-major, `width` x `height`) as a PNG.
pub fn grey_png(width: usize, height: usize, pixels: &[u8]) -> Vec<u8> {
    use image::ImageEncoder as _;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(pixels, width as u32, height as u32, image::ExtendedColorType::L8)
        .expect("encoding an in-memory grey buffer to PNG cannot fail");
    out
}
