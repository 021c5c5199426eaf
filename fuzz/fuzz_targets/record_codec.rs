#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| (mux_fuzz::target("record_codec").expect("a target").run)(data));
