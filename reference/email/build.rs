//! Generates the gRPC code from proto/email.proto with protoc (Debian `protobuf-compiler`), plus
//! the file descriptor set that server reflection serves.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("email_descriptor.bin"))
        .compile_protos(&["proto/email.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto/email.proto");
    Ok(())
}
