#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| (mux_fuzz::target("mux_config").expect("a target").run)(data));
