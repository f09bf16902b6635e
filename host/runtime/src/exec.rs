//! The execution pool (ADR 0020): where a plugin call runs once it has
//! used more than a moment of CPU, so that a busy guest never holds the
//! gateway's I/O workers.
//!
//! A call starts on the thread that asked for it (a gateway I/O worker) and
//! nearly every call ends there, within its first epoch tick, with no hop
//! between threads. A call that is still running guest code when a tick
//! comes (the meter is armed: it ran across a tick, at most one tick on the
//! I/O worker) moves, at that yield, to this pool's threads and finishes
//! there; its caller waits for it like for any I/O. A call that only waits
//! for host I/O (a bank call) stays where it is.
//!
//! The pool has fewer threads than the machine has cores (by default one
//! less, at least one), and they run under `SCHED_BATCH` at nice 10: when
//! the I/O workers want a core they get it, and a pool thread's wake-ups
//! never preempt them. Unlike the instance thread (ADR 0014), whose lower
//! priority was rejected because it holds wasmtime's pool locks, a pool
//! thread runs guest code nearly all the time and takes a pool lock only
//! to give back a finished call's fiber stack.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The pool's threads.
#[derive(Debug)]
pub(crate) struct Pool {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

/// Niceness of the pool's threads (Linux).
const NICE: i32 = 10;

impl Pool {
    pub(crate) fn start(threads: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("sfop-exec")
            .on_thread_start(lower_priority)
            .enable_all()
            .build()?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    pub(crate) fn handle(&self) -> tokio::runtime::Handle {
        self.handle.clone()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // The last `Api` may be dropped on a tokio worker, where a runtime
        // cannot block to shut down; the pool's calls are abandoned anyway.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The default size: one thread less than the machine has cores, at least one.
pub(crate) fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().saturating_sub(1))
        .unwrap_or(1)
        .max(1)
}

/// A call moved to the pool; dropping it (the caller gave up: its wall-clock
/// limit, a closed connection) ends the call at its next yield.
pub(crate) struct Moved<T>(pub(crate) tokio::task::JoinHandle<T>);

impl<T> Future for Moved<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for Moved<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `SCHED_BATCH` and nice 10 for the calling thread (a pool thread).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn lower_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `sched_setscheduler` only reads the initialised `sched_param`
    // passed, which outlives the call; pid 0 names the calling thread.
    let batch = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    // SAFETY: plain integer arguments; on Linux `PRIO_PROCESS` with who 0
    // names the calling thread only.
    let nice = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, NICE) };
    if batch != 0 || nice != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "an execution thread keeps the default priority"
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn pool_threads_run_as_batch_threads_at_nice_10() {
        let pool = Pool::start(1).unwrap();
        let (policy, nice) = pool.handle().block_on(async {
            tokio::spawn(async {
                let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
                // Fields after the command's closing parenthesis: state is
                // field 3, nice field 19, policy field 41.
                let rest = stat.rsplit_once(')').unwrap().1;
                let fields: Vec<&str> = rest.split_whitespace().collect();
                (fields[38].to_owned(), fields[16].to_owned())
            })
            .await
            .unwrap()
        });
        assert_eq!(policy, "3", "SCHED_BATCH");
        assert_eq!(nice, "10");
    }
}
