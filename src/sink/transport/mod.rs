//! kinship's own HTTP calls on the hot data path: a pooled hyper client on rustls (aws-lc),
//! SigV4 signing with `aws-sigv4`, credentials from a flow's SDK credentials provider and
//! endpoints from the SDK's own endpoint resolvers, so a call goes where the SDK would send it,
//! signed as the SDK would sign it, without the SDK's per-call machinery.
//!
//! [`HttpClient`] owns the connections (one pool, shared by clones); [`kinesis_endpoint`] and
//! [`firehose_endpoint`] say where calls go; [`AwsCaller`] signs and sends one POST.

mod caller;
mod endpoint;
mod error;
mod http;

#[cfg(test)]
pub(crate) mod test_support;

pub use caller::AwsCaller;
pub use endpoint::{firehose_endpoint, kinesis_endpoint};
pub use error::TransportError;
pub use http::{HttpClient, HttpSettings};

pub(crate) use http::{native_roots_available, read_ca_file};
