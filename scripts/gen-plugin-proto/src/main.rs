//! Compiles `proto/artifact.proto` (argument 1) into one Rust file in the directory given as
//! argument 2: prost messages (`bytes` fields as `bytes::Bytes`), the tonic client and the
//! tonic server.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (proto, out) = match (args.next(), args.next()) {
        (Some(p), Some(o)) => (p, o),
        _ => return Err("usage: gen-plugin-proto <artifact.proto> <out dir>".into()),
    };
    let include = std::path::Path::new(&proto)
        .parent()
        .ok_or("the proto has no directory")?
        .to_path_buf();
    let descriptors = protox::compile([&proto], [&include])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        // `bytes` fields as `Bytes`: chunks pass through without a copy.
        .bytes(".")
        .out_dir(&out)
        .compile_fds(descriptors)?;
    Ok(())
}
