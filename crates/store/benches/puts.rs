//! Put throughput of the SQLite store at increasing writer concurrency, on a real file.
//!
//! `cargo bench -p skiff-store --bench puts [-- TOTAL]`

use std::sync::Arc;

use skiff_store::Store;
use skiff_store::bench::bench_puts;
use skiff_store::sqlite::SqliteStore;

#[tokio::main]
async fn main() {
    // cargo passes `--bench`; the first number, if any, is the put count per run.
    let total = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(2000);
    for clients in [1, 4, 16, 64] {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path().join("bench.db")).unwrap());
        let stats = bench_puts(store, clients, total).await;
        println!(
            "clients={clients:>3} puts={} errors={} {:>8.0} puts/s  p50={:?} p90={:?} p99={:?} max={:?}",
            stats.puts,
            stats.errors,
            stats.puts_per_sec,
            stats.p50,
            stats.p90,
            stats.p99,
            stats.max
        );
    }
}
