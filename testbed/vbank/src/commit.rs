//! Group commit: every answer that must be durable waits for one flush
//! that began after its write, and one flush serves every answer waiting.
//!
//! Each operation decides and books in its own sled transaction on the
//! caller's task (in memory, microseconds, under the bank's writer lock),
//! then asks for durability here and awaits it. One `sfop-vbank-commit`
//! thread takes every request waiting, flushes the store once, and then
//! acknowledges each of them; requests that arrive during a flush form the
//! next batch. An answer therefore still leaves only once what it reports is
//! on disk (acknowledged means durable), `bank_tran_id` stays exactly-once
//! (the duplicate check is inside each booking's transaction), and a burst
//! of N concurrent transfers costs about one or two fsyncs instead of N —
//! none of them on an async worker (docs/adr/0022-async-capabilities.md).
//!
//! A caller that stops waiting (its deadline passed) changes nothing: the
//! booking is already made and the next flush makes it durable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;

use sfop_store::Store;
use tokio::sync::oneshot;

type Ack = oneshot::Sender<Result<(), String>>;

/// The commit thread and its queue; the thread starts at the first request
/// and ends (after a last flush) when the bank is dropped.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    shared: Arc<Shared>,
    thread: OnceLock<Option<thread::JoinHandle<()>>>,
}

#[derive(Debug)]
struct Shared {
    store: Store,
    queue: Mutex<Queue>,
    wake: Condvar,
    flushes: AtomicU64,
    acknowledged: AtomicU64,
}

#[derive(Debug, Default)]
struct Queue {
    waiting: Vec<Ack>,
    stop: bool,
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
                    queue = self.wake.wait(queue).unwrap_or_else(|p| p.into_inner());
                }
                if queue.waiting.is_empty() {
                    return; // stopping, nothing left to make durable
                }
                std::mem::take(&mut queue.waiting)
            };
            let result = self.store.flush().map_err(|e| e.to_string());
            self.flushes.fetch_add(1, Ordering::Relaxed);
            self.acknowledged
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            for ack in batch {
                // A caller that gave up no longer listens; its booking is
                // durable all the same.
                let _ = ack.send(result.clone());
            }
        }
    }
}

impl GroupCommit {
    pub(crate) fn new(store: Store) -> Self {
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

    /// Everything written before this call is on disk when the answer comes.
    pub(crate) async fn durable(&self) -> Result<(), String> {
        let started = self.thread.get_or_init(|| {
            let shared = self.shared.clone();
            thread::Builder::new()
                .name("sfop-vbank-commit".into())
                .spawn(move || shared.run())
                .map_err(|e| tracing::error!(error = %e, "virtual bank: no commit thread"))
                .ok()
        });
        if started.is_none() {
            // No thread could be started: flush here rather than lie.
            return self.shared.store.flush().map_err(|e| e.to_string());
        }
        let (ack, done) = oneshot::channel();
        {
            let mut queue = self.shared.queue();
            queue.waiting.push(ack);
        }
        self.shared.wake.notify_one();
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
        let commit = GroupCommit::new(Store::open(dir.path())?);
        let mut answers = Vec::new();
        {
            let mut queue = commit.shared.queue();
            for _ in 0..10 {
                let (ack, answer) = oneshot::channel();
                queue.waiting.push(ack);
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
        for mut answer in answers {
            assert_eq!(answer.try_recv()?, Ok(()));
        }
        Ok(())
    }
}
