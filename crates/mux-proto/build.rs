//! Compiles `proto/mux/v1/store.proto` (client and server) with protox: pure Rust, no
//! protoc needed.
fn main() {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["mux/v1/store.proto"], ["proto"]).expect("store.proto compiles");
    tonic_prost_build::configure()
        .compile_fds(fds)
        .expect("gRPC code generation");
}
