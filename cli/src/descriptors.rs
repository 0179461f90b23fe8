//! Room for a server program's connections: the soft open-file limit raised
//! towards what they need (up to the hard limit), and the process's
//! descriptor table sized for them at start.
//!
//! A shell's default soft limit is often 1,024, which would cap a server at
//! about a thousand connections (its loops log `accept failed` and pause
//! accepting). Sizing the table at start matters too: growing it later, at
//! the 65th, 129th, 257th... descriptor, in a process with several threads,
//! waits for an RCU grace period inside `accept`, stalling that loop and
//! every connection on it (6-19 ms on the machines this was measured on; a
//! minute once when the kernel's grace-period thread was starved). With a
//! single thread, as at the start of `main`, the kernel skips the wait.

use nix::fcntl::{fcntl, FcntlArg};
use rlimit::Resource;

/// What [`prepare`] found and left in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// The soft limit before.
    pub before: u64,
    /// The soft limit now.
    pub limit: u64,
    /// What was asked for.
    pub wanted: u64,
}

impl OpenFiles {
    /// Whether the limit now allows what was asked for.
    pub fn is_enough(&self) -> bool {
        self.limit >= self.wanted
    }
}

/// Raises the soft open-file limit towards `wanted` (never lowers it, and
/// never past the hard limit), then sizes the descriptor table for
/// `wanted` or the limit, whichever is lower. Call it while the process
/// has one thread.
pub fn prepare(wanted: u64) -> OpenFiles {
    let before = rlimit::getrlimit(Resource::NOFILE).map_or(0, |(soft, _)| soft);
    let limit = rlimit::increase_nofile_limit(wanted).unwrap_or(before);
    size_table(limit.min(wanted));
    OpenFiles {
        before,
        limit,
        wanted,
    }
}

/// Makes the kernel size the descriptor table for `count` descriptors: a
/// duplicate at the highest number, closed at once (the table keeps its
/// size).
fn size_table(count: u64) {
    let Some(highest) = count.checked_sub(1).and_then(|n| i32::try_from(n).ok()) else {
        return;
    };
    if let Ok(null) = std::fs::File::open("/dev/null") {
        if let Ok(duplicate) = fcntl(&null, FcntlArg::F_DUPFD_CLOEXEC(highest)) {
            let _ = nix::unistd::close(duplicate);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_size() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("FDSize:"))
            .and_then(|size| size.trim().parse().ok())
            .expect("an FDSize line")
    }

    #[test]
    fn the_limit_is_raised_and_the_table_sized_without_lowering_anything() {
        let (_, hard) = rlimit::getrlimit(Resource::NOFILE).expect("the limits");
        let wanted = hard.min(4096);
        let files = prepare(wanted);
        assert!(files.is_enough(), "{files:?} under a hard limit of {hard}");
        assert!(files.limit >= files.before, "{files:?}: lowered");
        assert!(
            table_size() >= wanted,
            "FDSize {} for {wanted}",
            table_size()
        );
        // Asking for less later changes nothing.
        let again = prepare(64);
        assert_eq!(again.limit, files.limit, "{again:?}");
        assert!(table_size() >= wanted);
    }
}
