//! One type for every destination a flow may have, so the sink stays one generic pipeline:
//! Kinesis Data Streams, Firehose, or the dry-run writer.

use std::sync::Arc;

use super::check::{Identity, IdentityProbe};
use super::clients::FlowClients;
use super::dry_run::{DryRunClient, DryRunOutput};
use super::firehose::FirehoseClient;
use super::kinesis::{DirectPut, KinesisClient};
use super::{PutError, PutRecords, RecordFailure, StreamStatus};
use crate::config::{Combine, DestinationKind, FlowConfig};
use crate::record::OutRecord;
use crate::shard_map::ShardMap;

/// A flow's destination, and the identity check of its credentials (none in a dry run).
pub struct DestinationClient {
    service: Service,
    identity: Option<IdentityProbe>,
}

enum Service {
    Kinesis(KinesisClient),
    Firehose(FirehoseClient),
    DryRun(DryRunClient),
    /// A flow without clients: every call fails with an error naming it.
    Unavailable(String),
}

impl DestinationClient {
    /// A client for flow `name` whose every call fails (a flow not in the config the clients
    /// were built from).
    pub fn unavailable(name: &str) -> Self {
        Self {
            service: Service::Unavailable(name.to_owned()),
            identity: None,
        }
    }

    /// The client for `flow`: the dry-run writer when the flow is in dry-run mode (it needs
    /// no AWS clients), else the service client built from `clients`.
    pub fn for_flow(
        flow: &FlowConfig,
        clients: Option<&FlowClients>,
        dry_run: Option<&Arc<DryRunOutput>>,
    ) -> Option<Self> {
        if flow.dry_run {
            let output = dry_run?;
            return Some(Self {
                service: Service::DryRun(DryRunClient::new(
                    &flow.name,
                    &flow.destination,
                    Arc::clone(output),
                )),
                identity: None,
            });
        }
        let clients = clients?;
        let service = match flow.destination.kind {
            DestinationKind::Kinesis => Service::Kinesis(KinesisClient::new(
                clients.kinesis.clone()?,
                &flow.destination,
                clients.region.clone(),
                flow.explicit_hash_key,
                (flow.combine == Combine::Kpl || super::ordered::applies(flow)).then(ShardMap::new),
                clients.data_caller.clone().map(|caller| DirectPut {
                    caller,
                    format: clients.wire_format,
                }),
            )),
            DestinationKind::Firehose => Service::Firehose(FirehoseClient::new(
                clients.firehose.clone()?,
                &flow.destination,
                clients.region.clone(),
                clients.data_caller.clone(),
            )),
        };
        Some(Self {
            service,
            identity: clients.identity.clone(),
        })
    }
}

impl PutRecords for DestinationClient {
    async fn put_records(&self, records: &[OutRecord]) -> Result<Vec<RecordFailure>, PutError> {
        match &self.service {
            Service::Kinesis(client) => client.put_records(records).await,
            Service::Firehose(client) => client.put_records(records).await,
            Service::DryRun(client) => client.put_records(records).await,
            Service::Unavailable(flow) => Err(unavailable(flow)),
        }
    }

    async fn describe(&self) -> Result<StreamStatus, PutError> {
        match &self.service {
            Service::Kinesis(client) => client.describe().await,
            Service::Firehose(client) => client.describe().await,
            Service::DryRun(client) => client.describe().await,
            Service::Unavailable(flow) => Err(unavailable(flow)),
        }
    }

    fn shards(&self) -> Option<Arc<ShardMap>> {
        match &self.service {
            Service::Kinesis(client) => client.shards(),
            _ => None,
        }
    }

    fn request_bytes(&self, records: &[OutRecord]) -> usize {
        match &self.service {
            Service::Kinesis(client) => client.request_bytes(records),
            Service::Firehose(client) => client.request_bytes(records),
            _ => super::request_bytes(records),
        }
    }

    async fn refresh_shards(&self) -> Result<usize, PutError> {
        match &self.service {
            Service::Kinesis(client) => client.refresh_shards().await,
            _ => Ok(0),
        }
    }

    async fn identity(&self) -> Result<Option<Identity>, PutError> {
        match &self.identity {
            Some(probe) => probe.identity().await.map(Some),
            None => Ok(None),
        }
    }
}

fn unavailable(flow: &str) -> PutError {
    PutError::Configuration {
        message: format!("flow `{flow}` has no client for its destination"),
        hint: "this is a bug in kinship; please report it".into(),
    }
}
