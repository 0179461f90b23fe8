//! What mux's command-line programs (`mux-server`, `mux-client`,
//! `mux-sidecar`, `mux-tour`) share, written once: logs through the `log`
//! facade to stderr at the level the user chose, one error line and a
//! failure exit code when the program fails, and waiting for SIGINT or
//! SIGTERM to stop.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::process::ExitCode;

/// Sends the library logs (the `log` facade) to stderr, at `level` and above.
pub fn init_logging(level: log::LevelFilter) {
    env_logger::Builder::new().filter_level(level).init();
}

/// Sets up logging, runs `body`, and turns its outcome into the exit code,
/// printing `program: error` on failure.
pub fn run(
    program: &str,
    level: log::LevelFilter,
    body: impl FnOnce() -> Result<(), String>,
) -> ExitCode {
    init_logging(level);
    match body() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{program}: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Blocks until SIGINT or SIGTERM arrives; returns the signal's number.
pub fn wait_for_stop_signal() -> Result<i32, String> {
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .map_err(|err| format!("cannot install signal handlers: {err}"))?;
    Ok(signals
        .forever()
        .next()
        .unwrap_or(signal_hook::consts::SIGTERM))
}
