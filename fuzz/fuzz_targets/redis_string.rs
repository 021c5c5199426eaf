#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| (mux_fuzz::target("redis_string").expect("a target").run)(data));
