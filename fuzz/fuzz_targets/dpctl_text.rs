#![no_main]
//! See fuzz/README.md; the property lives in `shardflow::fuzzing::dpctl_text`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| shardflow::fuzzing::dpctl_text(data));
