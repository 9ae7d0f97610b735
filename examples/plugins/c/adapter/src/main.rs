//! `write-wasi-adapter <path>`: writes the preview1 reactor adapter.

fn main() -> std::io::Result<()> {
    let path = std::env::args_os()
        .nth(1)
        .expect("usage: write-wasi-adapter <path>");
    std::fs::write(
        path,
        wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
    )
}
