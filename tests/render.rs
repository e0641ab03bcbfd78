//! The result screen at the smallest and largest sizes we support (320x240 SPI panel,
//! 1920x1080 HDMI): banner colour and words, the radiograph, the red mask, the warning line.

use embedded_graphics::pixelcolor::{Rgb888, RgbColor};
use ptxd::findings::{Finding, Mask, Side, Verdict};
use ptxd::preprocess::GreyImage;
use ptxd::render::{draw_result, Framebuffer, ResultView, AMBER, GREEN, RED, VIOLET};

/// A 400x300 grey gradient "radiograph" with a 100x80 mask block on the viewer's left.
fn scene() -> (GreyImage, Mask, Vec<Finding>) {
    let (w, h) = (400usize, 300usize);
    let pixels = (0..w * h).map(|i| (60 + (i % w) * 120 / w) as u8).collect();
    let mut mask = vec![0u8; w * h];
    for y in 50..130 {
        for x in 60..160 {
            mask[y * w + x] = 255;
        }
    }
    let finding = Finding {
        side: Side::Right,
        area_pixels: 8000,
        area_percent_image: 6.7,
        area_percent_side: 13.3,
        bbox: [60, 50, 100, 80],
        mean_probability: 0.9,
    };
    (
        GreyImage::new(w, h, pixels).unwrap(),
        Mask {
            width: w,
            height: h,
            pixels: mask,
        },
        vec![finding],
    )
}

fn draw(w: u32, h: u32, verdict: Verdict, with_mask: bool) -> Framebuffer {
    let (image, mask, findings) = scene();
    let mut fb = Framebuffer::new(w, h);
    let view = ResultView {
        image: &image,
        mask: with_mask.then_some(&mask),
        verdict,
        probability: Some(0.83),
        not_chest: None,
        findings: if with_mask { &findings } else { &[] },
        time: "2026-11-26T19:03:04Z",
        models: "ptx-cls int8 / ptx-seg int8",
        source: "watch:test.png",
    };
    let Ok(()) = draw_result(&mut fb, &view);
    fb
}

fn count(fb: &Framebuffer, x: std::ops::Range<u32>, y: std::ops::Range<u32>, pred: impl Fn(Rgb888) -> bool) -> usize {
    y.flat_map(|yy| x.clone().map(move |xx| (xx, yy)))
        .filter(|&(xx, yy)| pred(fb.pixel(xx, yy)))
        .count()
}

fn is_reddish(c: Rgb888) -> bool {
    let (r, g, b) = (i32::from(c.r()), i32::from(c.g()), i32::from(c.b()));
    r > g + 40 && r > b + 40
}

#[test]
fn positive_screen_is_legible_small_and_large() {
    for (w, h) in [(320u32, 240u32), (1920, 1080)] {
        let fb = draw(w, h, Verdict::Positive, true);
        // banner: red across the top, white letters on it
        assert_eq!(fb.pixel(1, 1), RED, "{w}x{h}");
        assert_eq!(fb.pixel(w - 2, 1), RED, "{w}x{h}");
        let banner_rows = (0..h).take_while(|&y| fb.pixel(1, y) == RED).count() as u32;
        assert!(
            banner_rows >= 14 && banner_rows <= h / 6,
            "{w}x{h}: banner {banner_rows} rows"
        );
        let letters = count(&fb, 0..w, 0..banner_rows, |c| c == Rgb888::WHITE);
        assert!(letters > 300, "{w}x{h}: banner text pixels {letters}");
        // letters at least 10 px high on the small screen, at least 30 on the large one
        let text_rows = (0..banner_rows)
            .filter(|&y| (0..w).any(|x| fb.pixel(x, y) == Rgb888::WHITE))
            .count() as u32;
        assert!(
            text_rows >= if w >= 1920 { 30 } else { 7 },
            "{w}x{h}: text {text_rows} rows high"
        );
        // the radiograph below it: many grey levels; the mask as red over it
        let body = banner_rows + 2..h * 3 / 4;
        let greys = count(&fb, 0..w, body.clone(), |c| {
            c.r() == c.g() && c.g() == c.b() && c.r() > 40
        });
        assert!(greys as u32 > w * h / 10, "{w}x{h}: radiograph visible");
        let red = count(&fb, 0..w, body, is_reddish);
        assert!(red as u32 > w * h / 200, "{w}x{h}: mask visible ({red} red pixels)");
        // the warning line in amber near the bottom
        let amber = count(&fb, 0..w, h - h / 5..h, |c| c == AMBER);
        assert!(amber > 50, "{w}x{h}: 'not a diagnosis' line");
    }
}

#[test]
fn negative_screen_is_green_with_no_red() {
    let fb = draw(320, 240, Verdict::Negative, false);
    assert_eq!(fb.pixel(1, 1), GREEN);
    assert_eq!(count(&fb, 0..320, 30..200, is_reddish), 0);
}

#[test]
fn indeterminate_screen_is_amber() {
    let fb = draw(800, 480, Verdict::Indeterminate, false);
    assert_eq!(fb.pixel(1, 1), AMBER);
}

#[test]
fn overlay_png_round_trips() {
    let fb = draw(320, 240, Verdict::Positive, true);
    let png = image::load_from_memory(&fb.to_png()).unwrap().to_rgb8();
    assert_eq!(png.dimensions(), (320, 240));
    assert_eq!(png.into_raw(), fb.to_rgb_bytes());
}

#[test]
fn not_chest_screen_is_violet_with_no_red_and_says_what_to_do() {
    let fb = draw(800, 480, Verdict::NotChestRadiograph, false);
    assert_eq!(fb.pixel(1, 1), VIOLET, "neither the alarm's red nor the idle slate");
    assert_eq!(count(&fb, 0..800, 40..380, is_reddish), 0, "no alarm colour");
    // the instruction line is drawn (white text in the footer)
    let text = count(&fb, 0..800, 400..480, |c| c == Rgb888::WHITE);
    assert!(text > 100, "footer text {text}");
}
