//! Compiles the admin API in `proto/` (Envoy's API types come from the
//! `envoy-types` crate). Uses a vendored `protoc`, so no system install is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    println!("cargo:rerun-if-changed=proto/admin.proto");
    tonic_prost_build::configure().compile_with_config(
        config,
        &["proto/admin.proto"],
        &["proto"],
    )?;
    Ok(())
}
