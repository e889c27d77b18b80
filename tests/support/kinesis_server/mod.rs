//! What the test endpoints that speak the Kinesis and Firehose wire formats share: the
//! fault-injecting server of the tests (`fault_kinesis`) and the bench's null endpoint
//! (`benches/ship/null_kinesis.rs`, which includes this folder by path). Each keeps its own
//! behaviour (faults, shards and stats; or counting as little as it can); this core does the
//! rest the same way for both:
//!
//! - [`listener`]: the accept loop and each connection, plain or TLS, HTTP/1.1 or HTTP/2 by ALPN,
//!   all stopped at once when the endpoint says so;
//! - [`protocol`]: what a request says it is (operation, JSON 1.1 or CBOR 1.1) and the answers and
//!   errors of the JSON services, in the request's format;
//! - [`answers`]: the bodies of `PutRecords` and `PutRecordBatch` answers in both formats, and of
//!   the describe operations;
//! - [`tls`]: the throwaway CA that an HTTPS listener's certificate comes from.
//!
//! It uses nothing of the rest of the test support, so that the bench can include it.

pub mod answers;
pub mod listener;
pub mod protocol;
pub mod tls;

/// The account every stream of a test endpoint belongs to, as its ARNs and messages name it.
pub const ACCOUNT: &str = "123456789012";
/// The region a test endpoint says it is in.
pub const REGION: &str = "us-east-1";
