//! Writes the crafted hostile traces of `tests/support/hostile.rs` as fuzzer seeds: small
//! files that declare millions of live blocks or stacks, stacks of 65,536 frames, megabyte
//! names and sums past 2^64. The output is the same on every run.
//!
//! `cargo run --release -p memtrail --example hostile_seeds -- [DIR]`
//! (default `analyzer/fuzz/seeds`).

#[path = "../tests/support/hostile.rs"]
mod hostile;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds"),
        std::path::PathBuf::from,
    );
    std::fs::create_dir_all(&dir)?;
    for (name, bytes) in hostile::seeds() {
        let path = dir.join(name);
        std::fs::write(&path, &bytes)?;
        eprintln!("wrote {} ({} bytes)", path.display(), bytes.len());
    }
    Ok(())
}
