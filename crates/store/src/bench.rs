//! Micro benchmark of raw store writes, run by `skiff bench api`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::Store;

/// Bytes per written value: the order of a small Kubernetes object.
const VALUE_SIZE: usize = 1024;

/// Throughput and latency of a run of [`bench_puts`].
#[derive(Debug, Clone, PartialEq)]
pub struct PutStats {
    /// Concurrent writers.
    pub clients: usize,
    /// Puts that succeeded.
    pub puts: usize,
    /// Puts that failed (they are not in the latencies).
    pub errors: usize,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// Successful puts per second of wall time.
    pub puts_per_sec: f64,
    /// Median latency of a successful put.
    pub p50: Duration,
    /// 90th percentile latency.
    pub p90: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Slowest put.
    pub max: Duration,
}

/// Creates `total` fresh keys of [`VALUE_SIZE`] bytes from `clients` concurrent writers (each
/// waits for its put before the next, as a request handler does) and reports throughput and
/// latency percentiles.
pub async fn bench_puts(store: Arc<dyn Store>, clients: usize, total: usize) -> PutStats {
    let clients = clients.max(1);
    // Keys unique to this run, so runs can repeat against the same store.
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let value = Bytes::from(vec![b'x'; VALUE_SIZE]);
    let started = Instant::now();
    let writers: Vec<_> = (0..clients)
        .map(|client| {
            let store = Arc::clone(&store);
            let value = value.clone();
            // Spread `total` as evenly as possible over the clients.
            let share = total / clients + usize::from(client < total % clients);
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(share);
                let mut errors = 0;
                for i in 0..share {
                    let key = format!("/skiff-bench/{run}/{client}/{i}");
                    let put_started = Instant::now();
                    match store.create(&key, value.clone()).await {
                        Ok(_) => latencies.push(put_started.elapsed()),
                        Err(_) => errors += 1,
                    }
                }
                (latencies, errors)
            })
        })
        .collect();

    let mut latencies = Vec::with_capacity(total);
    let mut errors = 0;
    for writer in writers {
        match writer.await {
            Ok((client_latencies, client_errors)) => {
                latencies.extend(client_latencies);
                errors += client_errors;
            }
            Err(_) => errors += total / clients,
        }
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let percentile = |p: usize| {
        latencies
            .get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    PutStats {
        clients,
        puts: latencies.len(),
        errors,
        elapsed,
        puts_per_sec: latencies.len() as f64 / elapsed.as_secs_f64().max(f64::EPSILON),
        p50: percentile(50),
        p90: percentile(90),
        p99: percentile(99),
        max: latencies.last().copied().unwrap_or_default(),
    }
}
