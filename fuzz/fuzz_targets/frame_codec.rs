//! The frame codec (`JSON*CRC32`, shared by the journal and the serial link): decoding any
//! text never panics, and a line it accepts encodes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ptxd::record::journal::{decode_line, encode_line};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(json) = decode_line(text) {
        assert_eq!(encode_line(json), format!("{text}\n"));
        let _ = serde_json::from_str::<serde_json::Value>(json);
    }
});
