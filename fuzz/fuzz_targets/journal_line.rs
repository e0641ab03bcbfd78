//! The journal line reader on any bytes: a record or nothing, never a panic; a record it
//! reads is written back as a line that reads as the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ptxd::record::journal::{encode_line, parse_record};

fuzz_target!(|data: &[u8]| {
    if let Some(record) = parse_record(data) {
        let line = encode_line(&serde_json::to_string(&record).unwrap());
        let again = parse_record(line.trim_end().as_bytes()).expect("a written record reads back");
        assert_eq!(again, record);
    }
});
