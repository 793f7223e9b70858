#![no_main]
//! See fuzz/README.md; the property lives in `shardflow::fuzzing::policy_file`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| shardflow::fuzzing::policy_file(data));
