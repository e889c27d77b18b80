//! One type for every destination a flow may have, so the sink stays one generic pipeline:
//! Kinesis Data Streams, Firehose, or the dry-run writer.

use std::sync::Arc;

use super::dry_run::{DryRunClient, DryRunOutput};
use super::firehose::FirehoseClient;
use super::kinesis::KinesisClient;
use super::{PutError, PutRecords, RecordFailure, StreamStatus};
use crate::aws::{FlowClients, Identity};
use crate::config::{Combine, DestinationKind, FlowConfig};
use crate::pipeline::shards::ShardMap;
use crate::record::OutRecord;

pub enum DestinationClient {
    Kinesis(KinesisClient),
    Firehose(FirehoseClient),
    DryRun(DryRunClient),
    /// A flow without clients: every call fails with an error naming it.
    Unavailable(String),
}

impl DestinationClient {
    /// The client for `flow`: the dry-run writer when the flow is in dry-run mode (it needs
    /// no AWS clients), else the service client built from `clients`.
    pub fn for_flow(
        flow: &FlowConfig,
        clients: Option<&FlowClients>,
        dry_run: Option<&Arc<DryRunOutput>>,
    ) -> Option<Self> {
        if flow.dry_run {
            let output = dry_run?;
            return Some(Self::DryRun(DryRunClient::new(
                &flow.name,
                &flow.destination,
                Arc::clone(output),
            )));
        }
        let clients = clients?;
        match flow.destination.kind {
            DestinationKind::Kinesis => Some(Self::Kinesis(KinesisClient::new(
                clients.kinesis.clone()?,
                &flow.destination,
                clients.region.clone(),
                flow.explicit_hash_key,
                clients.identity.clone(),
                (flow.combine == Combine::Kpl).then(ShardMap::new),
            ))),
            DestinationKind::Firehose => Some(Self::Firehose(FirehoseClient::new(
                clients.firehose.clone()?,
                &flow.destination,
                clients.region.clone(),
                clients.identity.clone(),
            ))),
        }
    }
}

impl PutRecords for DestinationClient {
    async fn put_records(&self, records: &[OutRecord]) -> Result<Vec<RecordFailure>, PutError> {
        match self {
            Self::Kinesis(client) => client.put_records(records).await,
            Self::Firehose(client) => client.put_records(records).await,
            Self::DryRun(client) => client.put_records(records).await,
            Self::Unavailable(flow) => Err(unavailable(flow)),
        }
    }

    async fn describe(&self) -> Result<StreamStatus, PutError> {
        match self {
            Self::Kinesis(client) => client.describe().await,
            Self::Firehose(client) => client.describe().await,
            Self::DryRun(client) => client.describe().await,
            Self::Unavailable(flow) => Err(unavailable(flow)),
        }
    }

    fn shards(&self) -> Option<Arc<ShardMap>> {
        match self {
            Self::Kinesis(client) => client.shards(),
            _ => None,
        }
    }

    async fn refresh_shards(&self) -> Result<usize, PutError> {
        match self {
            Self::Kinesis(client) => client.refresh_shards().await,
            _ => Ok(0),
        }
    }

    async fn identity(&self) -> Result<Option<Identity>, PutError> {
        match self {
            Self::Kinesis(client) => client.identity().await,
            Self::Firehose(client) => client.identity().await,
            Self::DryRun(client) => client.identity().await,
            Self::Unavailable(flow) => Err(unavailable(flow)),
        }
    }
}

fn unavailable(flow: &str) -> PutError {
    PutError::Configuration {
        message: format!("flow `{flow}` has no client for its destination"),
        hint: "this is a bug in kinship; please report it".into(),
    }
}
