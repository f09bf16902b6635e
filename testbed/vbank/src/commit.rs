//! Group commit: every answer that must be durable waits for one flush
//! that began after its write, and one flush serves every answer waiting.
//!
//! One `sfop-vbank-commit` thread is the bank's writer. A durable operation
//! hands it its booking ([`GroupCommit::book`]) and awaits the answer. The
//! thread takes every booking waiting, runs each in its own transaction of
//! the bank's journal (in memory, microseconds, under the bank's writer
//! lock), flushes the journal once (one write, one `fdatasync`; ADR 0031),
//! and then answers each of them; bookings that arrive during a flush
//! form the next batch. An answer therefore still leaves only once what it
//! reports is on disk (acknowledged means durable), `bank_tran_id` stays
//! exactly-once (the duplicate check is inside each booking's transaction),
//! and a burst of N concurrent transfers costs about one or two fsyncs
//! instead of N — none of them on an async worker
//! (docs/adr/0022-async-capabilities.md).
//!
//! Why the bookings run here and not on the caller's task: when the books
//! were in sled, sled held its global concurrency-control lock shared for
//! the whole of a flush, fsync included, and every transaction took it
//! exclusively, so a booking made on a tokio worker while the thread
//! flushed blocked that worker until the fsync ended
//! (docs/adr/0023-request-path-regression-and-bank-benchmarks.md). The
//! journal's flush holds only its log, but the reason to keep one writer
//! stands: the bookings and the flush take turns on one thread, batches
//! form while a flush runs, and the callers' workers only wait for an
//! answer, without a thread.
//!
//! A caller that stops waiting (its deadline passed) changes nothing: the
//! booking is made (or is made when its turn comes) and the flush after it
//! makes it durable; `transfer-result` finds it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;

use sfop_store::Journal;
use tokio::sync::oneshot;

/// Bookings that arrived while a batch was being booked join it, before its
/// flush, until the batch holds this many.
const DRAIN_UP_TO: usize = 256;

/// What the thread does with a booking once the flush after it is done:
/// answers the caller with the booking's outcome, or with the flush's error.
type Ack = Box<dyn FnOnce(Result<(), String>) + Send>;

/// A booking waiting for the thread: runs it, and returns how to answer.
type Job = Box<dyn FnOnce() -> Ack + Send>;

/// The commit thread and its queue; the thread starts at the first request
/// and ends (after a last flush) when the bank is dropped.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    shared: Arc<Shared>,
    thread: OnceLock<Option<thread::JoinHandle<()>>>,
}

#[derive(Debug)]
struct Shared {
    store: Journal,
    queue: Mutex<Queue>,
    wake: Condvar,
    flushes: AtomicU64,
    acknowledged: AtomicU64,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Job>,
    stop: bool,
    /// The thread waits on `wake` (and nobody woke it yet): the next
    /// booking must wake it. While it books or flushes, a booking only
    /// queues, without a system call; the thread looks again before it
    /// sleeps.
    asleep: bool,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("waiting", &self.waiting.len())
            .field("stop", &self.stop)
            .field("asleep", &self.asleep)
            .finish()
    }
}

/// How the group commit went so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Flushes the commit thread made.
    pub flushes: u64,
    /// Answers it made durable (each waited for one flush).
    pub acknowledged: u64,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run(&self) {
        loop {
            let batch = {
                let mut queue = self.queue();
                while queue.waiting.is_empty() && !queue.stop {
                    queue.asleep = true;
                    queue = self.wake.wait(queue).unwrap_or_else(|p| p.into_inner());
                }
                queue.asleep = false;
                if queue.waiting.is_empty() {
                    return; // stopping, nothing left to make durable
                }
                std::mem::take(&mut queue.waiting)
            };
            // Book every one, and those that came meanwhile (up to
            // `DRAIN_UP_TO`, so that a steady stream cannot hold back the
            // first answers), then one flush for all of them: a booking that
            // arrives before the flush begins is served by it, not by the
            // next one. A flush (a write and an `fdatasync`) takes longer
            // than many bookings.
            let mut acks: Vec<Ack> = batch.into_iter().map(run_job).collect();
            while acks.len() < DRAIN_UP_TO {
                let more = std::mem::take(&mut self.queue().waiting);
                if more.is_empty() {
                    break;
                }
                acks.extend(more.into_iter().map(run_job));
            }
            let result = self.store.flush().map_err(|e| e.to_string());
            self.flushes.fetch_add(1, Ordering::Relaxed);
            self.acknowledged
                .fetch_add(acks.len() as u64, Ordering::Relaxed);
            for ack in acks {
                ack(result.clone());
            }
        }
    }
}

/// Runs one booking; a booking that panicked is answered with an error
/// (and the thread lives on for the others).
fn run_job(job: Job) -> Ack {
    catch_unwind(AssertUnwindSafe(job)).unwrap_or_else(|_| {
        tracing::error!("virtual bank: a booking panicked on the commit thread");
        Box::new(|_| {})
    })
}

impl GroupCommit {
    pub(crate) fn new(store: Journal) -> Self {
        Self {
            shared: Arc::new(Shared {
                store,
                queue: Mutex::new(Queue::default()),
                wake: Condvar::new(),
                flushes: AtomicU64::new(0),
                acknowledged: AtomicU64::new(0),
            }),
            thread: OnceLock::new(),
        }
    }

    /// Runs `booking` on the commit thread, then answers its outcome once a
    /// flush that began after it has ended (an `Err` is the flush's error:
    /// the outcome is then not known to be durable).
    pub(crate) async fn book<T: Send + 'static>(
        &self,
        booking: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let started = self.thread.get_or_init(|| {
            let shared = self.shared.clone();
            thread::Builder::new()
                .name("sfop-vbank-commit".into())
                .spawn(move || shared.run())
                .map_err(|e| tracing::error!(error = %e, "virtual bank: no commit thread"))
                .ok()
        });
        if started.is_none() {
            // No thread could be started: book and flush here rather than lie.
            let outcome = booking();
            return self
                .shared
                .store
                .flush()
                .map(|_| outcome)
                .map_err(|e| e.to_string());
        }
        let (answer, done) = oneshot::channel();
        let job: Job = Box::new(move || {
            let outcome = booking();
            Box::new(move |flushed: Result<(), String>| {
                // A caller that gave up no longer listens; its booking is
                // durable all the same.
                let _ = answer.send(flushed.map(|()| outcome));
            })
        });
        let asleep = {
            let mut queue = self.shared.queue();
            queue.waiting.push(job);
            std::mem::take(&mut queue.asleep)
        };
        if asleep {
            self.shared.wake.notify_one();
        }
        done.await
            .unwrap_or_else(|_| Err("the commit thread ended".to_owned()))
    }

    pub(crate) fn stats(&self) -> CommitStats {
        CommitStats {
            flushes: self.shared.flushes.load(Ordering::Relaxed),
            acknowledged: self.shared.acknowledged.load(Ordering::Relaxed),
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.shared.queue().stop = true;
        self.shared.wake.notify_one();
        if let Some(Some(thread)) = self.thread.take() {
            // It flushes what is waiting and ends; the store closes after.
            let _ = thread.join();
        }
        // A compaction the last flush started ends before the bank closes,
        // so that the journal can be opened again at once.
        self.shared.store.wait_for_compaction();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every request waiting when the thread looks is served by one flush,
    /// and each is acknowledged.
    #[test]
    fn one_flush_serves_every_request_waiting() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let commit = GroupCommit::new(Journal::open(dir.path())?);
        let mut answers = Vec::new();
        {
            let mut queue = commit.shared.queue();
            for i in 0..10 {
                let (ack, answer) = oneshot::channel();
                queue.waiting.push(Box::new(move || {
                    Box::new(move |flushed: Result<(), String>| {
                        let _ = ack.send(flushed.map(|()| i));
                    })
                }));
                answers.push(answer);
            }
            queue.stop = true; // run() returns once nothing is left
        }
        commit.shared.run();
        assert_eq!(
            commit.stats(),
            CommitStats {
                flushes: 1,
                acknowledged: 10
            }
        );
        for (i, mut answer) in answers.into_iter().enumerate() {
            assert_eq!(answer.try_recv()?, Ok(i));
        }
        Ok(())
    }

    /// A booking runs on the commit thread, and its outcome comes back only
    /// after a flush; a booking that panics is an error for its caller
    /// alone, and the thread serves the next one.
    #[test]
    fn bookings_run_on_the_commit_thread_and_answer_after_a_flush()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let commit = GroupCommit::new(Journal::open(dir.path())?);
        let rt = tokio::runtime::Builder::new_current_thread().build()?;
        let on = rt.block_on(commit.book(|| std::thread::current().name().map(str::to_owned)))?;
        assert_eq!(on.as_deref(), Some("sfop-vbank-commit"));
        assert_eq!(
            commit.stats(),
            CommitStats {
                flushes: 1,
                acknowledged: 1
            }
        );
        #[allow(clippy::panic)]
        let panicked = rt.block_on(commit.book(|| -> u8 { panic!("a booking that panics") }));
        assert!(panicked.is_err(), "{panicked:?}");
        assert_eq!(rt.block_on(commit.book(|| 7u8))?, 7);
        Ok(())
    }
}
