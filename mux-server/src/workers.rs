//! The worker pool for blocking handlers: a bounded job queue and a fixed
//! number of threads. A loop thread never waits on it: when the queue is
//! full the request is answered `503 UNAVAILABLE` at once.
//!
//! The `503` is the status `spec/patterns.md` §1.3 reserves for an
//! overloaded server.

use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use mux_core::StreamId;
use mux_runtime::{ConnKey, LoopHandle};

use crate::command::Command;
use crate::handler::{run, HandlerFn};
use crate::request::Request;

/// One blocking request to run.
pub(crate) struct Job {
    pub(crate) handler: HandlerFn,
    pub(crate) request: Request,
    pub(crate) key: ConnKey,
    pub(crate) id: StreamId,
    pub(crate) reply: LoopHandle<Command>,
}

/// Starts `threads` workers on a queue of `queue` jobs.
pub(crate) fn start(
    threads: usize,
    queue: usize,
) -> std::io::Result<(Sender<Job>, Vec<JoinHandle<()>>)> {
    let (sender, receiver) = crossbeam_channel::bounded::<Job>(queue);
    let mut handles = Vec::with_capacity(threads);
    for n in 0..threads {
        let receiver: Receiver<Job> = receiver.clone();
        let handle = std::thread::Builder::new()
            .name(format!("mux-worker-{n}"))
            .spawn(move || {
                for job in receiver.iter() {
                    let response = run(&*job.handler, job.request);
                    // The loop may have stopped; the response has nobody to go to.
                    let _ = job.reply.send(Command::Done {
                        key: job.key,
                        id: job.id,
                        result: Ok(response),
                    });
                }
            })?;
        handles.push(handle);
    }
    Ok((sender, handles))
}
