//! The config parser on any text: a validated config or a message naming the key, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ptxd::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = Config::parse(text, std::path::Path::new("/etc/ptxd"));
});
