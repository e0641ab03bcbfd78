//! The image decoder on any bytes (DICOM, PNG, JPEG, TIFF are recognised by content): an
//! image or a refusal, never a panic, and never more memory than the limits allow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ptxd::config::Limits;

fuzz_target!(init: {
    // libfuzzer-sys's hook aborts on any panic, even one the decoder catches and turns into a
    // refusal (decode::guarded). This hook prints the message only: a caught panic is then a
    // refusal and an uncaught one still aborts at libFuzzer's boundary, so it is still found.
    // No backtrace: with RUST_BACKTRACE set (as on CI, whose log shows backtraces), the first
    // one symbolizes this binary's debug info and keeps 140 MB of it, which libFuzzer's
    // 512 MB limit then counted against the next large image. Replaying one input with
    // PTXD_FUZZ_SHOW set keeps Rust's own hook, backtraces and all.
    match std::env::var_os("PTXD_FUZZ_SHOW") {
        Some(_) => drop(std::panic::take_hook()),
        None => std::panic::set_hook(Box::new(|info| eprintln!("panic (a refusal if caught): {info}"))),
    }
}, |data: &[u8]| {
    let result = ptxd::pixels::decode::decode_bytes(data, Limits::default());
    // replaying one input by hand (the binary with a file argument): say what became of it
    if std::env::var_os("PTXD_FUZZ_SHOW").is_some() {
        match &result {
            Ok(r) => eprintln!("decoded: {}x{}", r.image.width, r.image.height),
            Err(e) => eprintln!("refused: {e}"),
        }
    }
    if let Ok(r) = result {
        assert_eq!(r.image.pixels.len(), r.image.width * r.image.height);
    }
});
