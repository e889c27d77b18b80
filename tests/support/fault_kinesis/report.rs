//! How the records a test wrote compare with those a server stored: lost, duplicated and
//! unexpected records, counted as multisets.

use std::collections::HashMap;

/// How the records a test wrote compare with those the server stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Expected records of which fewer copies were stored than were expected.
    pub lost: usize,
    /// Copies stored beyond the expected number of an expected record.
    pub duplicates: usize,
    /// Stored records that match no expected record at all (a corrupted or split line).
    pub unexpected: usize,
}

/// Compares records as multisets: order is ignored, and a record expected twice must be stored
/// twice.
pub fn delivery_report(expected: &[Vec<u8>], accepted: &[Vec<u8>]) -> DeliveryReport {
    // (copies expected, copies stored) per distinct record.
    let mut counts: HashMap<&[u8], (usize, usize)> = HashMap::with_capacity(expected.len());
    for record in expected {
        counts.entry(record.as_slice()).or_default().0 += 1;
    }
    let mut report = DeliveryReport::default();
    for record in accepted {
        match counts.get_mut(record.as_slice()) {
            Some((_, stored)) => *stored += 1,
            None => report.unexpected += 1,
        }
    }
    for &(wanted, stored) in counts.values() {
        report.lost += wanted.saturating_sub(stored);
        report.duplicates += stored.saturating_sub(wanted);
    }
    report
}

/// Lines written vs records stored: how many of `expected` are missing, and how many extra
/// records arrived. Extra copies of expected records and records that match none are both
/// counted as extra, so `(0, 0)` means exactly what was written was stored; see
/// [`delivery_report`] to tell the two apart.
pub fn losses_and_duplicates(expected: &[Vec<u8>], accepted: &[Vec<u8>]) -> (usize, usize) {
    let report = delivery_report(expected, accepted);
    (report.lost, report.duplicates + report.unexpected)
}
