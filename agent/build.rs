//! Compiles the agent protocol with protox (pure Rust): no protoc needed on any machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/agent.proto");
    let descriptors = protox::compile(["proto/agent.proto"], ["proto"])?;
    // Small per-stream buffers: a node holds one session stream per managed host.
    tonic_prost_build::configure()
        .codec_path("crate::codec::SmallBufferCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
