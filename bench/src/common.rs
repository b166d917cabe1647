//! What the benchmark programs share: finding the `tandem` binary built
//! beside them, summarising figures, and writing `bench/results/NAME.json`.

use std::path::PathBuf;

use anyhow::{Context, bail};

/// The `tandem` binary next to this benchmark's (bench/run.sh builds both).
pub fn tandem_exe() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?
        .parent()
        .context("exe dir")?
        .join("tandem");
    if !exe.exists() {
        bail!(
            "{} not found: build it first (bench/run.sh does)",
            exe.display()
        );
    }
    Ok(exe)
}

/// (min, median, max) of `values` (zeros when empty).
#[allow(dead_code)] // not every benchmark summarises this way
pub fn min_median_max(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let median = match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    };
    (
        v.first().copied().unwrap_or(0.0),
        median,
        v.last().copied().unwrap_or(0.0),
    )
}

/// Writes `results` as `bench/results/NAME.json`; returns the path.
pub fn write_results<T: serde::Serialize>(name: &str, results: &T) -> anyhow::Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(results)? + "\n")?;
    Ok(path)
}
