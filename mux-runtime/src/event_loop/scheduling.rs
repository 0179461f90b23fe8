//! How the kernel schedules a loop's thread beside the threads that hand it
//! work: [`ThreadScheduling`].
//!
//! A client's loop is woken by the application thread that hands it a call
//! and then blocks until the answer comes. Linux lets a freshly woken thread
//! preempt the one running on its core, so the loop often starts before
//! the caller has blocked: the loop writes the request while two threads
//! are runnable on that core, and the server's thread, woken by the write,
//! is placed on the other core. From call to call the server then moves
//! between the cores and runs each call on caches the other core left cold.
//! Traced at one call per millisecond (`perf` scheduler events, 300 calls
//! to `mux-bench serve mux`): the server's thread moved in 123 of the 128
//! calls whose caller the loop had preempted, and in 11 of the 177 whose
//! caller had already blocked.
//!
//! Under `SCHED_BATCH` a woken thread never preempts the one running: the
//! caller blocks first, and the three threads settle. 3,000 calls at one per
//! millisecond (`tests/examples/paced_probe.rs` against `mux-bench serve
//! mux`, three alternating pairs): the server's thread moved 1-20 times
//! instead of 1,448-1,510, its CPU was 101-104 ms instead of 120-126, and
//! the calls' p50 96-99 µs instead of 110-116.
//!
//! The cost, by the policy's definition (not measured on its own here): a
//! batch thread woken while every core is busy waits for the running
//! thread to block or its time slice to end instead of taking the core at
//! once, so it suits a loop whose wake-ups mostly come from a thread about
//! to wait for it. A server's loop is woken by its sockets; in a trace of
//! as many calls from a direct client (caller and server loop, no client
//! loop) its thread moved 3 times, so the server keeps the default
//! (`Batch` was not measured there). The benchmark's runs with and without it are
//! in `spec/PERFORMANCE-LOG.md` ("Stop 39").
//!
//! Implements no rule of the spec.

use std::io;

/// The scheduling class a loop asks for its thread when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ThreadScheduling {
    /// The thread keeps the class and nice value it was started with.
    #[default]
    Inherited,
    /// Linux's `SCHED_BATCH`, the nice value kept: woken, the thread does
    /// not preempt the thread running on its core (see the module doc).
    /// Elsewhere the same as [`ThreadScheduling::Inherited`].
    Batch,
}

/// Puts the calling thread in `scheduling`'s class.
pub(super) fn apply_to_current_thread(scheduling: ThreadScheduling) -> io::Result<()> {
    match scheduling {
        ThreadScheduling::Inherited => Ok(()),
        ThreadScheduling::Batch => set_batch(),
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn set_batch() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `sched_setscheduler` reads the `sched_param` it is given and
    // nothing else; pid 0 is the calling thread. SCHED_BATCH takes static
    // priority 0 and leaves the nice value as it is.
    let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn set_batch() -> io::Result<()> {
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The scheduling policy (`SCHED_*`) and nice value in a thread's
    /// `/proc` stat file (its fields 41 and 19).
    fn policy_and_nice(stat_file: &str) -> (u32, i32) {
        let stat = std::fs::read_to_string(stat_file).expect("the thread's stat");
        // Fields from the third on follow the command name's closing parenthesis.
        let rest = &stat[stat.rfind(')').expect("a command name") + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        (
            fields[41 - 3].parse().expect("a policy"),
            fields[19 - 3].parse().expect("a nice value"),
        )
    }

    const OWN: &str = "/proc/thread-self/stat";

    #[test]
    fn batch_puts_the_thread_in_sched_batch_and_keeps_its_nice_value() {
        std::thread::spawn(|| {
            let (_, nice) = policy_and_nice(OWN);
            apply_to_current_thread(ThreadScheduling::Batch).expect("SCHED_BATCH");
            assert_eq!(
                policy_and_nice(OWN),
                (libc::SCHED_BATCH as u32, nice),
                "the class changed, the nice value kept"
            );
        })
        .join()
        .expect("the thread's checks");
    }

    #[test]
    fn inherited_leaves_the_thread_as_it_was() {
        std::thread::spawn(|| {
            let before = policy_and_nice(OWN);
            apply_to_current_thread(ThreadScheduling::Inherited).expect("nothing to do");
            assert_eq!(policy_and_nice(OWN), before);
        })
        .join()
        .expect("the thread's checks");
    }
}
