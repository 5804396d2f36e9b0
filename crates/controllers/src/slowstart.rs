//! Creating many children in growing batches (upstream's `slowStartBatch`): 1, 2, 4, ... at a
//! time, stopping after the first batch with an error, so that a request bound to fail (a quota,
//! a webhook) fails once rather than hundreds of times.

use futures::future::join_all;

/// Runs `create` `count` times, `initial` at once first and then doubling, until a batch has an
/// error. Returns how many succeeded and the first error, if any.
pub async fn slow_start_batch<F, Fut, E>(
    count: usize,
    initial: usize,
    create: F,
) -> (usize, Option<E>)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut remaining = count;
    let mut batch = remaining.min(initial.max(1));
    let mut successes = 0;
    while batch > 0 {
        let results = join_all((0..batch).map(|_| create())).await;
        let mut first_error = None;
        for result in results {
            match result {
                Ok(()) => successes += 1,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if first_error.is_some() {
            return (successes, first_error);
        }
        remaining -= batch;
        batch = remaining.min(2 * batch);
    }
    (successes, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn batches_double_and_stop_after_an_error() {
        let calls = AtomicUsize::new(0);
        let (ok, err) = slow_start_batch(10, 1, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<(), ()>(())
        })
        .await;
        assert_eq!((ok, err), (10, None));
        assert_eq!(calls.load(Ordering::SeqCst), 10);

        // Batches 1, 2, 4: the fifth call fails, so the batch of 4 ends the run.
        let calls = AtomicUsize::new(0);
        let (ok, err) = slow_start_batch(20, 1, || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            if n == 4 { Err("quota") } else { Ok(()) }
        })
        .await;
        assert_eq!((ok, err), (6, Some("quota")));
        assert_eq!(calls.load(Ordering::SeqCst), 7);
    }
}
