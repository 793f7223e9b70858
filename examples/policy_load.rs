//! Loads a policy file and times it: `cargo run --release --example policy_load -- FILE`.
//! Peak memory: run it under `/usr/bin/time -v` (Maximum resident set size).
fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).ok_or_else(|| anyhow::anyhow!("usage: policy_load FILE"))?;
    let t = std::time::Instant::now();
    let f = shardflow::policy::PolicyFile::load(&path)?;
    println!("loaded {} rules in {:?}", f.rules.len(), t.elapsed());
    Ok(())
}
