//! Generates the cni-ctl gRPC code from `proto/` with the protoc shipped by the
//! `protoc-bin-vendored` crate (no system protoc needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY-free: setting an environment variable for this build script's own process.
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto/cnictl/v1/cnictl.proto");
    tonic_prost_build::configure().compile_protos(&["proto/cnictl/v1/cnictl.proto"], &["proto"])?;
    Ok(())
}
