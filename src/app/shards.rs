//! The shard map of a flow that aggregates per shard or delivers in order per shard: learnt at
//! the flow's start, then kept fresh by a task of the flow.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::{Combine, FlowConfig};
use crate::shard_map::{Shard, ShardMap};
use crate::sink::check::{self};
use crate::sink::{self, PutRecords};

/// How often an aggregating flow learns its stream's shards again, besides when a record lands
/// on another shard than expected.
pub(super) const SHARD_REFRESH_EVERY: Duration = Duration::from_secs(60);

/// The shard map an aggregating flow groups records by, and a flow delivering in order per
/// shard builds its calls by: learnt now, then kept fresh by a task. A dry run aggregates as
/// for a stream of one shard; a client that cannot list shards leaves the map empty: only
/// records with equal keys are aggregated together, and ordered delivery cuts the hash key
/// space into equal lanes of its own.
pub(super) async fn shard_map<P: PutRecords>(
    flow: &FlowConfig,
    client: &Arc<P>,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> Option<Arc<ShardMap>> {
    let ordered = sink::ordered::applies(flow);
    if flow.combine != Combine::Kpl && !ordered {
        return None;
    }
    let Some(map) = client.shards() else {
        let map = ShardMap::new();
        if flow.dry_run {
            map.replace(vec![Shard {
                id: "dry-run".into(),
                start: 0,
                end: u128::MAX,
            }]);
        }
        return Some(map);
    };
    let deadline = check::deadline(flow);
    let usage = match (flow.combine == Combine::Kpl, ordered) {
        (true, true) => "records are aggregated and calls built per shard",
        (false, true) => "calls are built per shard",
        _ => "records are aggregated per shard",
    };
    match tokio::time::timeout(deadline, client.refresh_shards()).await {
        Ok(Ok(count)) => {
            info!(flow = %flow.name, shards = count, usage, "Shards learnt.")
        }
        Ok(Err(failure)) => {
            warn!(flow = %flow.name, cause = %failure, "Cannot list the stream's shards (kinesis:ListShards); until they are known, only records with equal partition keys are aggregated together, and ordered calls are built per slice of the hash key space.")
        }
        Err(_) => {
            warn!(flow = %flow.name, "Listing the stream's shards timed out; until they are known, only records with equal partition keys are aggregated together, and ordered calls are built per slice of the hash key space.")
        }
    }
    tasks.spawn(keep_shards_fresh(
        Arc::clone(client),
        Arc::clone(&map),
        flow.name.clone(),
        shutdown.clone(),
    ));
    Some(map)
}

/// Learns the shards again every [`SHARD_REFRESH_EVERY`], and at once when asked.
pub(super) async fn keep_shards_fresh<P: PutRecords>(
    client: Arc<P>,
    map: Arc<ShardMap>,
    flow: String,
    stop: CancellationToken,
) {
    let mut known = map.snapshot().len();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(SHARD_REFRESH_EVERY) => {}
            _ = map.refresh_requested() => {}
        }
        match client.refresh_shards().await {
            Ok(count) => {
                if count != known {
                    info!(flow = %flow, shards = count, before = known, "The stream's shards changed.");
                }
                known = count;
            }
            Err(failure) => {
                warn!(flow = %flow, cause = %failure, "Cannot list the stream's shards; the last known map is kept.")
            }
        }
    }
}
