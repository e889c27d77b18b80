//! A fresh kinesalite with one single-shard stream per test, and reading its records back.

use std::time::Duration;

use super::kinesalite::{self, Kinesalite};

/// How long a test waits for the records it expects to appear in the stream.
pub const READ_DEADLINE: Duration = Duration::from_secs(60);

/// A new server with a one-shard `stream`, a temp dir for the agent, and a runtime for the SDK.
pub fn setup(stream: &str) -> (Kinesalite, tempfile::TempDir, tokio::runtime::Runtime) {
    setup_with_shards(stream, 1)
}

/// As [`setup`], with `shards` shards.
pub fn setup_with_shards(
    stream: &str,
    shards: i32,
) -> (Kinesalite, tempfile::TempDir, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let server = Kinesalite::start();
    runtime.block_on(async {
        let client = kinesalite::client(&server.endpoint).await;
        kinesalite::create_stream(&client, stream, shards).await;
    });
    (server, tempfile::tempdir().expect("temp dir"), runtime)
}

/// The data of every record in `stream`, in order, once `expected` arrived or the deadline passed.
pub fn read_back(
    runtime: &tokio::runtime::Runtime,
    server: &Kinesalite,
    stream: &str,
    expected: usize,
) -> Vec<Vec<u8>> {
    read_back_within(runtime, server, stream, expected, READ_DEADLINE)
}

/// As [`read_back`], waiting up to `deadline`.
pub fn read_back_within(
    runtime: &tokio::runtime::Runtime,
    server: &Kinesalite,
    stream: &str,
    expected: usize,
    deadline: Duration,
) -> Vec<Vec<u8>> {
    runtime.block_on(async {
        let client = kinesalite::client(&server.endpoint).await;
        kinesalite::read_all(&client, stream, expected, deadline)
            .await
            .into_iter()
            .map(|record| record.data)
            .collect()
    })
}
