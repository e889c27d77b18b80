//! Running under systemd: the agent's `sd_notify` messages (READY, STATUS, WATCHDOG, STOPPING)
//! over a real datagram socket, and the packaged unit file checked by `systemd-analyze`.

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::agent::{Agent, BINARY};
use crate::support::config::{AgentConfig, Flow};
use crate::support::fault_kinesis::{FaultKinesis, Faults};
use crate::support::wait;

const DEADLINE: Duration = Duration::from_secs(60);

/// The next datagram that is not a watchdog ping, counting the pings seen on the way.
fn next_state(socket: &UnixDatagram, pings: &mut usize) -> String {
    let mut buffer = [0u8; 4096];
    // `recv` waits up to the socket's read timeout itself: no pause between tries.
    let state = wait::poll_every(Duration::ZERO, DEADLINE, || {
        let length = socket.recv(&mut buffer).ok()?;
        let message = String::from_utf8_lossy(&buffer[..length]).into_owned();
        if message == "WATCHDOG=1" {
            *pings += 1;
            None
        } else {
            Some(message)
        }
    });
    state.unwrap_or_else(|| panic!("no message from the agent within {DEADLINE:?}"))
}

#[test]
fn the_agent_tells_systemd_it_is_ready_alive_and_stopping() {
    let server = FaultKinesis::start(Faults::default());
    let dir = tempfile::tempdir().expect("temp dir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    fs::create_dir_all(dir.path().join("logs")).expect("logs");
    let config = AgentConfig::new(dir.path())
        .emulator("us-east-1", &server.endpoint())
        .flow(Flow::kinesis(
            "app",
            format!("{}/logs/*.log", dir.path().display()),
            "notified",
        ))
        .write();
    let socket_env = socket_path.display().to_string();
    let mut agent = Agent::start_with(
        &config,
        dir.path(),
        None,
        &[],
        &[("NOTIFY_SOCKET", &socket_env), ("WATCHDOG_USEC", "400000")],
    );
    let mut pings = 0;
    let ready = next_state(&socket, &mut pings);
    assert_eq!(ready, "READY=1\nSTATUS=Shipping 1 flow(s).");
    // Ready only once the flows started and the destination was checked.
    let output = agent.output();
    assert!(output.contains("kinship is running."), "{output}");
    assert!(output.contains("Destination found."), "{output}");
    // Fed every 200 ms: a few pings in a second.
    let until = Instant::now() + Duration::from_secs(1);
    let mut buffer = [0u8; 64];
    while Instant::now() < until {
        if let Ok(length) = socket.recv(&mut buffer) {
            assert_eq!(&buffer[..length], b"WATCHDOG=1");
            pings += 1;
        }
    }
    assert!(pings >= 3, "{pings} watchdog pings in a second");
    // `systemctl reload` sends SIGHUP: reloading, then ready again.
    agent.signal("HUP");
    assert_eq!(
        next_state(&socket, &mut pings),
        "RELOADING=1\nSTATUS=Reloading the config."
    );
    assert_eq!(
        next_state(&socket, &mut pings),
        "READY=1\nSTATUS=Shipping 1 flow(s)."
    );
    agent.signal("TERM");
    let stopping = next_state(&socket, &mut pings);
    assert_eq!(
        stopping,
        "STOPPING=1\nSTATUS=Shutting down: sending what was read."
    );
    assert!(agent.wait_exit(DEADLINE).success());
}

#[test]
fn the_packaged_unit_passes_systemd_analyze_verify_and_is_hardened() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/systemd/kinship.service");
    let text = fs::read_to_string(&unit).expect("unit file");
    assert!(
        text.contains("Type=notify") && text.contains("WatchdogSec="),
        "{text}"
    );
    // A reload checks the config before the agent reads it.
    let reloads: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("ExecReload="))
        .collect();
    assert_eq!(
        reloads,
        [
            "ExecReload=/usr/bin/kinship check --config /etc/kinship/kinship.yaml",
            "ExecReload=/bin/kill -HUP $MAINPID"
        ]
    );
    // verify checks that the binary exists: point the unit at the one just built.
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("kinship.service");
    fs::write(&copy, text.replace("/usr/bin/kinship", BINARY)).expect("copy");
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (from the systemd package) must be installed");
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The hardening, as systemd rates it without a running system manager.
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze security");
    let report = String::from_utf8_lossy(&security.stdout);
    let exposure: f64 = report
        .lines()
        .find_map(|line| {
            line.split("Overall exposure level for kinship.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    assert!(exposure < 3.0, "exposure {exposure}:\n{report}");
}
