//! A fixed pool of encoder threads.
//!
//! JPEG encoding is CPU-bound, so more threads than cores only add contention, stacks and
//! allocator arenas. Each variant has at most one job in flight (it waits for its result), so
//! the queue is bounded by the number of variants; a variant that falls behind simply takes
//! the newest frame when its turn comes.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The pool; its threads end when it is dropped (after finishing queued jobs).
#[derive(Debug)]
pub struct EncoderPool {
    tx: Mutex<mpsc::Sender<Job>>,
    threads: usize,
}

/// The pool is gone or a job panicked.
#[derive(Debug, thiserror::Error)]
#[error("the encoder thread failed (job panicked or pool stopped)")]
pub struct JobFailed;

impl EncoderPool {
    /// A pool of `threads` threads (at least 1).
    pub fn new(threads: usize) -> std::io::Result<EncoderPool> {
        let threads = threads.max(1);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            let span = tracing::Span::current();
            std::thread::Builder::new()
                .name(format!("encoder-{i}"))
                .spawn(move || {
                    let _span = span.entered();
                    loop {
                        // The lock is held only while taking a job, never while running it.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            // A panicking job (an OpenCV bug, say) must not take the thread
                            // with it; its caller sees the dropped result channel.
                            Ok(job) => {
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                            }
                            Err(_) => return,
                        }
                    }
                })?;
        }
        Ok(EncoderPool {
            tx: Mutex::new(tx),
            threads,
        })
    }

    /// A pool with one thread per available core.
    pub fn per_core() -> std::io::Result<EncoderPool> {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        EncoderPool::new(n.min(8))
    }

    /// Threads in the pool.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` on a pool thread and waits for its result without blocking the runtime.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, JobFailed> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.tx
            .lock()
            .map_err(|_| JobFailed)?
            .send(job)
            .map_err(|_| JobFailed)?;
        rx.await.map_err(|_| JobFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_pool_threads() {
        let pool = EncoderPool::new(2).unwrap();
        let name = pool
            .run(|| std::thread::current().name().map(str::to_string))
            .await
            .unwrap();
        assert!(name.unwrap().starts_with("encoder-"));
        let results =
            futures_util::future::join_all((0..10).map(|i| pool.run(move || i * 2))).await;
        assert_eq!(results.into_iter().map(Result::unwrap).sum::<i32>(), 90);
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_and_the_pool_goes_on() {
        let pool = EncoderPool::new(1).unwrap();
        // The panic message is expected on stderr.
        assert!(pool.run(|| panic!("boom")).await.is_err());
        assert_eq!(pool.run(|| 7).await.unwrap(), 7);
    }
}
