#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| (mux_fuzz::target("ssm_parameter").expect("a target").run)(data));
