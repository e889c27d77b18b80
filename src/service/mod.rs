//! Telling the service manager how the agent is doing, and the Windows service.
//!
//! Under systemd with `Type=notify`, `NOTIFY_SOCKET` names a datagram socket: kinship sends
//! `READY=1` once its start-up checks ran and its flows started, `STOPPING=1` when a shutdown
//! begins, `STATUS=…` lines, and `WATCHDOG=1` every half `WatchdogSec` while its runtime is
//! responsive. Without `NOTIFY_SOCKET`, all of this does nothing.
//!
//! Under the Windows Service Control Manager, `READY=1` reports the service running; stop
//! requests and the statuses around them are [`control`], carried to Windows by `windows`.

pub mod control;
#[cfg(windows)]
pub mod windows;

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// What `kinship service …` asks of the Windows service (the command line's words for it are
/// the `cli` module's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceRequest {
    /// Register with the Service Control Manager, to run with `config` as `account`.
    Install { config: PathBuf, account: String },
    /// Stop the service if it runs, and remove it.
    Uninstall,
    /// Start the service and wait until it runs.
    Start,
    /// Stop the service and wait until it has stopped.
    Stop,
    /// Run as the service, with `config`.
    Run { config: PathBuf },
}

/// What `kinship service …` answers where there is no Windows service to manage.
pub const WINDOWS_ONLY: &str = "`kinship service` manages the Windows service, on Windows only; on Linux use the systemd unit in packaging/systemd";

/// Sends `state` (`READY=1`, `STOPPING=1`, `STATUS=…`) to the service manager, if there is one.
pub fn notify(state: &str) {
    #[cfg(unix)]
    if let Err(failure) = unix::notify(state) {
        tracing::debug!(%failure, "Cannot notify the service manager.");
    }
    #[cfg(windows)]
    windows::notify(state);
    #[cfg(not(any(unix, windows)))]
    let _ = state;
}

/// How often to feed the watchdog: half of `WATCHDOG_USEC`, when it is set for this process.
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_interval_from(
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::process::id(),
    )
}

fn watchdog_interval_from(pid: Option<&str>, usec: Option<&str>, own_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(own_pid) {
            return None;
        }
    }
    let micros: u64 = usec?.trim().parse().ok()?;
    (micros > 0).then(|| Duration::from_micros(micros / 2))
}

/// Feeds the watchdog every `interval` until `stop` fires. The tick runs on the agent's
/// runtime, so a runtime that stops turning stops feeding it and systemd restarts the agent.
pub async fn feed_watchdog(interval: Duration, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => notify("WATCHDOG=1"),
        }
    }
}

#[cfg(unix)]
mod unix {
    use std::io;
    use std::os::unix::net::{SocketAddr, UnixDatagram};

    pub fn notify(state: &str) -> io::Result<()> {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(());
        };
        let socket = UnixDatagram::unbound()?;
        let text = path.to_string_lossy();
        let address = match text.strip_prefix('@') {
            // An abstract socket (Linux).
            #[cfg(target_os = "linux")]
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name.as_bytes())?
            }
            _ => SocketAddr::from_pathname(&path)?,
        };
        socket.send_to_addr(state.as_bytes(), &address)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_is_fed_at_half_its_timeout_only_for_this_process() {
        let half = Some(Duration::from_secs(15));
        assert_eq!(watchdog_interval_from(None, Some("30000000"), 7), half);
        assert_eq!(watchdog_interval_from(Some("7"), Some("30000000"), 7), half);
        assert_eq!(watchdog_interval_from(Some("1"), Some("30000000"), 7), None);
        assert_eq!(watchdog_interval_from(None, Some("0"), 7), None);
        assert_eq!(watchdog_interval_from(None, Some("soon"), 7), None);
        assert_eq!(watchdog_interval_from(None, None, 7), None);
    }
}
