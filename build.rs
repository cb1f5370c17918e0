//! Compiles the admin API in `proto/` (Envoy's API types come from the
//! `envoy-types` crate). Uses a vendored `protoc`, so no system install is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing reads the env concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=proto/admin.proto");
    tonic_prost_build::configure().compile_protos(&["proto/admin.proto"], &["proto"])?;
    Ok(())
}
