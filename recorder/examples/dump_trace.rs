//! Prints every record of a trace, one per line (a debugging aid for recorder work).
//! Usage: cargo run -p memtrail-record --example dump_trace -- FILE

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: dump_trace FILE"))?;
    let reader = memtrail_format::TraceReader::open(&path)?;
    for record in reader {
        println!("{:?}", record?);
    }
    Ok(())
}
