//! The image decoder on any bytes (DICOM, PNG, JPEG, TIFF are recognised by content): an
//! image or a refusal, never a panic, and never more memory than the limits allow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ptxd::config::Limits;

fuzz_target!(init: {
    // libfuzzer-sys's hook aborts on any panic, even one the decoder catches and turns into a
    // refusal (decode::guarded); with the default hook a caught panic is a refusal and an
    // uncaught one still aborts at libFuzzer's boundary, so it is still found
    let _ = std::panic::take_hook();
}, |data: &[u8]| {
    if let Ok(r) = ptxd::decode::decode_bytes(data, Limits::default()) {
        assert_eq!(r.image.pixels.len(), r.image.width * r.image.height);
    }
});
