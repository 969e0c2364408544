//! Generates the gRPC code of proto/notes.proto with protoc (Debian `protobuf-compiler`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tonic_prost_build::configure().build_client(true).compile_protos(&["proto/notes.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto/notes.proto");
    Ok(())
}
