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

/// Firehose `PutRecordBatch`: records and bytes per call.
pub const FIREHOSE_MAX_RECORDS_PER_CALL: usize = 500;
pub const FIREHOSE_MAX_BYTES_PER_CALL: usize = 4 * 1024 * 1024;
/// A Firehose record's data, before base64: 1,000 KiB.
pub const FIREHOSE_MAX_RECORD_BYTES: usize = 1000 * 1024;

/// One service's limits, with the defaults kinship uses within them.
#[derive(Clone, Copy, Debug)]
pub struct ServiceLimits {
    pub max_records_per_call: usize,
    pub default_bytes_per_call: usize,
    pub max_bytes_per_call: usize,
    pub default_record_bytes: usize,
    pub max_record_bytes: usize,
}

pub const KINESIS: ServiceLimits = ServiceLimits {
    max_records_per_call: KINESIS_MAX_RECORDS_PER_CALL,
    default_bytes_per_call: KINESIS_DEFAULT_BYTES_PER_CALL,
    max_bytes_per_call: KINESIS_MAX_BYTES_PER_CALL,
    default_record_bytes: KINESIS_DEFAULT_RECORD_BYTES,
    max_record_bytes: KINESIS_MAX_RECORD_BYTES,
};

pub const FIREHOSE: ServiceLimits = ServiceLimits {
    max_records_per_call: FIREHOSE_MAX_RECORDS_PER_CALL,
    default_bytes_per_call: FIREHOSE_MAX_BYTES_PER_CALL,
    max_bytes_per_call: FIREHOSE_MAX_BYTES_PER_CALL,
    default_record_bytes: FIREHOSE_MAX_RECORD_BYTES,
    max_record_bytes: FIREHOSE_MAX_RECORD_BYTES,
};
