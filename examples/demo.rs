//! Runs kinship end to end on this machine with no AWS account: starts a local Kinesis server
//! (kinesalite, installed with npm on first use), creates a stream, ships a sample access log
//! through the agent, and prints the records read back from the stream.
//!
//! `cargo run --example demo`

#![allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "the demo runs real processes and waits for them by the wall clock"
)]

#[path = "../tests/support/emulator.rs"]
#[allow(dead_code)]
mod emulator;
#[path = "../tests/support/kinesalite.rs"]
#[allow(dead_code)]
mod kinesalite;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use kinship::config::Config;
use tokio_util::sync::CancellationToken;

const STREAM: &str = "kinship-demo";
const LINES: usize = 1000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_writer(std::io::stderr)
        .init();
    // Dummy credentials: the local server checks none, and nothing here may reach AWS.
    for (name, value) in kinesalite::env_for_agent() {
        std::env::set_var(name, value);
    }

    println!("Starting a local Kinesis server (kinesalite; installed with npm on first use)...");
    let server = kinesalite::Kinesalite::start();
    let client = kinesalite::client(&server.endpoint).await;
    kinesalite::create_stream(&client, STREAM, 1).await;
    println!("Created stream {STREAM} at {}", server.endpoint);

    let work = tempfile::tempdir()?;
    let log = work.path().join("access.log");
    let lines = write_sample_log(&log, LINES)?;
    let config_text = format!(
        "state_dir: {state}\naws:\n  region: {region}\n  endpoint_url: {endpoint}\n  check_identity: false\nflows:\n  - name: demo\n    files: {log}\n    kinesis_stream: {STREAM}\n    initial_position: start_of_file\n    max_batch_age: 200ms\n    max_in_flight: 1\n",
        state = work.path().join("state").display(),
        region = kinesalite::REGION,
        endpoint = server.endpoint,
        log = log.display(),
    );
    let config_path = work.path().join("kinship.yaml");
    std::fs::write(&config_path, &config_text)?;
    println!("Config ({}):\n{config_text}", config_path.display());
    let config = Config::parse(&config_path, &config_text)?;

    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(kinship::app::run(config, shutdown.clone(), None));
    let records = kinesalite::read_all(&client, STREAM, LINES, Duration::from_secs(60)).await;
    shutdown.cancel();
    agent.await??;

    println!(
        "\nRead back {} of {LINES} lines from stream {STREAM}; the first and last three:",
        records.len()
    );
    let shown = records
        .iter()
        .take(3)
        .chain(records.iter().skip(records.len().saturating_sub(3)));
    for record in shown {
        println!(
            "  {} key={} {}",
            record.sequence_number,
            record.partition_key,
            String::from_utf8_lossy(&record.data).trim_end()
        );
    }
    let delivered: Vec<Vec<u8>> = records.into_iter().map(|record| record.data).collect();
    if delivered != lines {
        return Err(format!("the stream does not hold the log's {LINES} lines in order").into());
    }
    println!("\nEvery line arrived once, byte for byte, in file order.");
    Ok(())
}

/// Writes `count` access-log lines to `path` and returns them, newlines included.
fn write_sample_log(path: &Path, count: usize) -> std::io::Result<Vec<Vec<u8>>> {
    let lines: Vec<Vec<u8>> = (0..count)
        .map(|index| {
            format!(
                "192.0.2.{} - - [23/Nov/2026:10:{:02}:{:02} +0000] \"GET /products/{} HTTP/1.1\" 200 {} \"-\" \"curl/8.5.0\"\n",
                index % 250 + 1,
                index / 60 % 60,
                index % 60,
                index,
                512 + index % 4096
            )
            .into_bytes()
        })
        .collect();
    let mut file = std::fs::File::create(path)?;
    file.write_all(&lines.concat())?;
    Ok(lines)
}
