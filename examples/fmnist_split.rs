//! Prints relprune's fixed Fashion-MNIST split and the reference draw as JSON (indices into the
//! original train file), so that a peer tool in a benchmark works on exactly the same samples.
//!
//! cargo run --release --example fmnist_split -- [REFS_PER_CLASS] [SEED]

use relprune::data::{fashion_mnist, select_references};

fn main() -> relprune::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let k: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let seed: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(0);
    let splits = fashion_mnist::load_splits(&fashion_mnist::resolve_dir(None))?;
    let refs = select_references(&splits.train, k, seed, None)?;
    let out = serde_json::json!({
        "train": splits.train.indices,
        "val": splits.val.indices,
        "references": refs.indices,
        "refs_per_class": k,
        "seed": seed,
        "mean": fashion_mnist::MEAN,
        "std": fashion_mnist::STD,
    });
    println!("{out}");
    Ok(())
}
