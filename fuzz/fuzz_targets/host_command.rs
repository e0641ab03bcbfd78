//! The serial host's command parser on any line: a command or a reason, never a panic; a
//! line it accepts is within the protocol's length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ptxd::sink::serial::{parse_command, MAX_COMMAND_LEN};

fuzz_target!(|data: &[u8]| {
    if parse_command(data).is_ok() {
        assert!(data.len() <= MAX_COMMAND_LEN + 1, "{} bytes accepted", data.len());
    }
});
