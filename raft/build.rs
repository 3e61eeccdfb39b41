//! Compiles the internal protocol with protox (pure Rust), so a fresh machine needs no protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/porch.proto");
    let descriptors = protox::compile(["proto/porch.proto"], ["proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
