//! Where password hashes are checked: a few dedicated threads, at a lower CPU priority
//! than the threads that serve requests.
//!
//! An argon2id verification takes a whole core for about 12 ms. On the async runtime it
//! would stall every request sharing that thread; on tokio's blocking pool it competes
//! as an equal with the workers, and a flood of logins halved the throughput of people
//! already signed in. Here at most `threads` verifications run at once (more wait their
//! turn, asynchronously), and with a positive `nice` the kernel gives request threads
//! the CPU first: logins slow down under contention instead of everything else. With
//! idle CPU a verification runs at full speed whatever its priority.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Semaphore, oneshot};

use super::AuthError;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Debug)]
pub struct VerifierPool {
    jobs: Sender<Job>,
    /// One permit per thread: a job is only queued when a thread is free for it.
    permits: Arc<Semaphore>,
}

impl VerifierPool {
    /// `threads` verifiers (at least one) at niceness `nice` (0 = normal, 19 = lowest).
    pub fn new(threads: usize, nice: u8) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("cas-verify-{i}"))
                .spawn(move || work(&queue, nice))?;
        }
        Ok(Self {
            jobs,
            permits: Arc::new(Semaphore::new(threads)),
        })
    }

    /// Runs `check` on a verifier thread once one is free.
    pub async fn run<T: Send + 'static>(
        &self,
        check: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AuthError> {
        let unavailable = |why| AuthError::unavailable(super::SourceError::Verifier(why));
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| unavailable("closed"))?;
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _permit = permit;
            let _ = tx.send(check());
        });
        self.jobs.send(job).map_err(|_| unavailable("stopped"))?;
        rx.await.map_err(|_| unavailable("failed"))
    }
}

/// A verifier thread: lower its own priority, then run jobs until the pool is dropped.
fn work(queue: &Mutex<Receiver<Job>>, nice: u8) {
    lower_priority(nice);
    loop {
        let next = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = next else { return };
        // A panicking check drops its result sender: the caller gets `Unavailable`, and
        // this thread lives on.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
    }
}

/// On Linux, niceness is per thread: this lowers only the calling one, by `nice` from
/// where it starts (the process's own). Best effort: a failure only means the old
/// behaviour, so it is logged, not fatal.
#[cfg(target_os = "linux")]
fn lower_priority(nice: u8) {
    use rustix::process::{getpriority_process, setpriority_process};
    if nice == 0 {
        return;
    }
    let me = Some(rustix::thread::gettid());
    let lowered = getpriority_process(me)
        .and_then(|now| setpriority_process(me, (now + i32::from(nice)).min(19)));
    if let Err(e) = lowered {
        tracing::warn!(error = %e, "cannot lower the priority of a password verifier thread");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(_nice: u8) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_checks_off_the_runtime_and_survives_a_panic() {
        let pool = VerifierPool::new(2, 5).unwrap();
        let name = pool
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert!(name.unwrap().starts_with("cas-verify-"));
        let failed = pool.run(|| -> u32 { panic!("boom") }).await;
        assert!(matches!(failed, Err(AuthError::Unavailable(_))));
        assert_eq!(pool.run(|| 41 + 1).await.unwrap(), 42);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn verifier_threads_run_at_the_configured_niceness() {
        let pool = VerifierPool::new(1, 7).unwrap();
        let nice = pool
            .run(|| rustix::process::getpriority_process(Some(rustix::thread::gettid())))
            .await
            .unwrap()
            .unwrap();
        // Relative to the test process's own niceness, which may already be raised.
        let base = rustix::process::getpriority_process(None).unwrap();
        assert_eq!(nice, (base + 7).min(19));
    }

    #[tokio::test]
    async fn at_most_threads_checks_run_at_once() {
        let pool = Arc::new(VerifierPool::new(2, 0).unwrap());
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (pool, running, peak) = (pool.clone(), running.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                pool.run(move || {
                    use std::sync::atomic::Ordering::SeqCst;
                    let now = running.fetch_add(1, SeqCst) + 1;
                    peak.fetch_max(now, SeqCst);
                    // Wait (a bounded while) for a second check to start, so the peak does
                    // not depend on how the machine schedules threads.
                    for _ in 0..100 {
                        if running.load(SeqCst) >= 2 {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    peak.fetch_max(running.load(SeqCst), SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    running.fetch_sub(1, SeqCst);
                })
                .await
                .unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
