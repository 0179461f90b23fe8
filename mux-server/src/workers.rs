//! The worker pool for blocking handlers: a bounded job queue and a fixed
//! number of threads. A loop thread never waits on it: when the queue is
//! full the request is answered `503 UNAVAILABLE` at once.
//!
//! The `503` is the status `spec/patterns.md` §1.3 reserves for an
//! overloaded server.
//!
//! A job whose stream or connection ended before a worker took it is
//! dropped unrun ([`Job::cancelled`]); stopping the pool waits for running
//! handlers only until a deadline, then leaves them behind, so a shutdown
//! keeps its word whatever the handlers do.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use mux_runtime::LoopHandle;

use crate::command::{Command, ReplyTo};
use crate::handler::{run, HandlerFn};
use crate::request::Request;

/// One blocking request to run.
pub(crate) struct Job {
    pub(crate) handler: HandlerFn,
    pub(crate) request: Request,
    pub(crate) to: ReplyTo,
    pub(crate) reply: LoopHandle<Command>,
    /// Set by the loop when the stream or its connection ended: nobody
    /// waits for the answer any more.
    pub(crate) cancelled: Arc<AtomicBool>,
}

/// Workers still running, and a signal when one ends.
#[derive(Debug, Default)]
struct Running {
    count: Mutex<usize>,
    ended: Condvar,
}

/// The pool.
#[derive(Debug)]
pub(crate) struct WorkerPool {
    jobs: Option<Sender<Job>>,
    /// The queue's receiving end, for its depth.
    queue: Receiver<Job>,
    threads: Vec<JoinHandle<()>>,
    running: Arc<Running>,
}

impl WorkerPool {
    /// Starts `threads` workers on a queue of `queue` jobs.
    pub(crate) fn start(threads: usize, queue: usize) -> std::io::Result<Self> {
        let (sender, receiver) = crossbeam_channel::bounded::<Job>(queue);
        let running = Arc::new(Running::default());
        let mut handles = Vec::with_capacity(threads);
        for n in 0..threads {
            let receiver: Receiver<Job> = receiver.clone();
            let running = Arc::clone(&running);
            *running.count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
            let handle = std::thread::Builder::new()
                .name(format!("mux-worker-{n}"))
                .spawn(move || {
                    for job in receiver.iter() {
                        if job.cancelled.load(Ordering::Relaxed) {
                            continue;
                        }
                        let response = run(&*job.handler, job.request);
                        // The loop may have stopped; the response has nobody to go to.
                        let _ = job.reply.send(Command::Done {
                            to: job.to,
                            result: Ok(response),
                        });
                    }
                    let mut count = running.count.lock().unwrap_or_else(|p| p.into_inner());
                    *count -= 1;
                    running.ended.notify_all();
                })?;
            handles.push(handle);
        }
        Ok(Self {
            jobs: Some(sender),
            queue: receiver,
            threads: handles,
            running,
        })
    }

    /// The queue, to read its depth.
    pub(crate) fn queue(&self) -> Receiver<Job> {
        self.queue.clone()
    }

    /// Where loops send jobs.
    pub(crate) fn sender(&self) -> Option<Sender<Job>> {
        self.jobs.clone()
    }

    /// Closes the queue and waits for the workers until `deadline` (or for
    /// as long as they take, without one). Workers still running a handler
    /// then are left to finish on their own: their answers go nowhere.
    pub(crate) fn stop(&mut self, deadline: Option<Instant>) {
        self.jobs = None; // workers end when the queue's last sender is gone
        let mut count = self.running.count.lock().unwrap_or_else(|p| p.into_inner());
        while *count > 0 {
            let left = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => std::time::Duration::from_secs(3600),
            };
            if left.is_zero() {
                break;
            }
            count = match self.running.ended.wait_timeout(count, left) {
                Ok((count, _)) => count,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        let all_ended = *count == 0;
        drop(count);
        if all_ended {
            for thread in self.threads.drain(..) {
                let _ = thread.join();
            }
        } else {
            log::warn!("shutdown deadline passed with blocking handlers still running");
            self.threads.clear(); // detached: they end with their handlers
        }
    }
}
