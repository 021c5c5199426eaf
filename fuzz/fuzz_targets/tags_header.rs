#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| (mux_fuzz::target("tags_header").expect("a target").run)(data));
