//! Compiles protos/ with protox, so building ev needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=protos");
    let fds = protox::compile(["protos/link.proto", "protos/control.proto"], ["protos"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
