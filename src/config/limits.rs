//! The service's limits, named once. Sizes are counted as Kinesis counts them: a record's data
//! plus its partition key.

/// Records in one `PutRecords` call.
pub const KINESIS_MAX_RECORDS_PER_CALL: usize = 500;
/// Bytes (data + partition keys) in one `PutRecords` call, as most endpoints still enforce it.
pub const KINESIS_DEFAULT_BYTES_PER_CALL: usize = 5 * 1024 * 1024;
/// The largest call size the current API reference allows.
pub const KINESIS_MAX_BYTES_PER_CALL: usize = 10 * 1024 * 1024;
/// A stream's default maximum record size (data + partition key).
pub const KINESIS_DEFAULT_RECORD_BYTES: usize = 1024 * 1024;
/// The largest maximum record size a stream owner can configure.
pub const KINESIS_MAX_RECORD_BYTES: usize = 10 * 1024 * 1024;
/// The smallest record limit kinship accepts: below this, ordinary log lines would be cut.
pub const MIN_RECORD_BYTES: usize = 1024;
/// Partition keys are 1 to 256 Unicode characters.
pub const PARTITION_KEY_MAX_CHARS: usize = 256;
