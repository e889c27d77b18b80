//! Table-driven tests of the copytruncate decision: one row per case a fix was made for.

use super::*;

const FINGERPRINT: usize = 32;
const PATIENCE: Duration = Duration::from_secs(5);

/// 40 bytes: longer than the fingerprint, so its head is a full one.
const ORIGINAL: &[u8] = b"line 000001 aaaaaaa\nline 000002 bbbbbbb\n";
const OTHER: &[u8] = b"line 000017 zzzzzzz\nline 000018 yyyyyyy\n";

fn head(bytes: &[u8]) -> Head {
    identity::head_of_bytes(&bytes[..bytes.len().min(FINGERPRINT)]).expect("not empty")
}

fn path(name: &str) -> Arc<Path> {
    Arc::from(Path::new(name))
}

/// A file truncated lately, read to `offset`, that started with `start`; with its lead if
/// this process read it, and the reading it was truncated under.
fn truncated(start: &[u8], offset: u64, read_here: bool) -> CopyCandidate {
    CopyCandidate {
        head: Some(head(start)),
        lead: read_here.then(|| Lead::of(start)),
        of: CopyOf::Truncated {
            offset,
            path: path("/log/app.log"),
            original: read_here.then_some(Original { reading: 7 }),
        },
    }
}

/// A file still followed, as its tailer noted it (head and lead; no head while empty).
fn followed(start: &[u8]) -> CopyCandidate {
    CopyCandidate {
        head: identity::head_of_bytes(&start[..start.len().min(FINGERPRINT)]),
        lead: Some(Lead::of(start)),
        of: CopyOf::Followed {
            path: path("/log/app.log"),
        },
    }
}

/// A file known only by a checkpoint or by what it holds on disk now: a head, no lead.
fn followed_by_head(start: &[u8], name: &str) -> CopyCandidate {
    CopyCandidate {
        head: Some(head(start)),
        lead: None,
        of: CopyOf::Followed { path: path(name) },
    }
}

fn continues(start: &[u8], offset: u64, original: Option<Original>) -> CopyDecision {
    CopyDecision::ContinuesTruncated {
        offset,
        head: head(start),
        original,
        of: path("/log/app.log"),
    }
}

fn like(name: &str) -> Arc<Path> {
    path(name)
}

struct Case {
    name: &'static str,
    first_bytes: &'static [u8],
    size: u64,
    undecided_for: Duration,
    candidates: Vec<CopyCandidate>,
    expect: CopyDecision,
}

fn check(cases: Vec<Case>) {
    let rules = CopyRules {
        fingerprint_bytes: FINGERPRINT,
        patience: PATIENCE,
    };
    for case in cases {
        let new = NewFile {
            first_bytes: &case.first_bytes[..case.first_bytes.len().min(FINGERPRINT)],
            size: case.size,
            undecided_for: case.undecided_for,
        };
        let decided = decide(&new, case.candidates, &rules);
        assert_eq!(decided.decision, case.expect, "{}", case.name);
    }
}

#[test]
fn a_new_file_like_no_known_file_is_not_a_copy() {
    let now = Duration::ZERO;
    check(vec![
        Case {
            name: "nothing known to compare with",
            first_bytes: ORIGINAL,
            size: 40,
            undecided_for: now,
            candidates: vec![],
            expect: CopyDecision::NotACopy,
        },
        Case {
            name: "a file whose head differs",
            first_bytes: OTHER,
            size: 40,
            undecided_for: now,
            candidates: vec![truncated(ORIGINAL, 40, true), followed(ORIGINAL)],
            expect: CopyDecision::NotACopy,
        },
        Case {
            name: "an empty file, with only checkpoints to compare with",
            first_bytes: b"",
            size: 0,
            undecided_for: now,
            candidates: vec![followed_by_head(ORIGINAL, "/log/old.log")],
            expect: CopyDecision::NotACopy,
        },
        Case {
            name: "a file shorter than the fingerprint, unlike the file it is shorter than",
            first_bytes: b"line 000017",
            size: 11,
            undecided_for: now,
            candidates: vec![truncated(ORIGINAL, 40, true)],
            expect: CopyDecision::NotACopy,
        },
        Case {
            name: "a short file that begins like a known head it does not cover is compared \
                   by head, and matches none",
            first_bytes: b"line 000001 aaa",
            size: 15,
            undecided_for: now,
            candidates: vec![followed_by_head(ORIGINAL, "/log/old.log")],
            expect: CopyDecision::NotACopy,
        },
    ]);
}

#[test]
fn the_copy_of_a_truncated_file_continues_where_that_file_was_read_to() {
    let now = Duration::ZERO;
    check(vec![
        Case {
            name: "a copy of a file truncated while this process read it",
            first_bytes: ORIGINAL,
            size: 40,
            undecided_for: now,
            candidates: vec![truncated(ORIGINAL, 20, true)],
            expect: continues(ORIGINAL, 20, Some(Original { reading: 7 })),
        },
        Case {
            name: "a copy of a file truncated before the last stop (known from a checkpoint)",
            first_bytes: ORIGINAL,
            size: 40,
            undecided_for: now,
            candidates: vec![truncated(ORIGINAL, 20, false)],
            expect: continues(ORIGINAL, 20, None),
        },
        Case {
            name: "a copy that starts with everything read",
            first_bytes: ORIGINAL,
            size: 40,
            undecided_for: now,
            candidates: vec![truncated(ORIGINAL, 40, true)],
            expect: continues(ORIGINAL, 40, Some(Original { reading: 7 })),
        },
        Case {
            name: "a copy shorter than what was read of its original starts at its end",
            first_bytes: ORIGINAL,
            size: 40,
            undecided_for: now,
            candidates: vec![truncated(ORIGINAL, 4000, true)],
            expect: continues(ORIGINAL, 40, Some(Original { reading: 7 })),
        },
        Case {
            name: "a truncated original is chosen over a followed file with as long a head",
            first_bytes: ORIGINAL,
            size: 40,
            undecided_for: now,
            candidates: vec![truncated(ORIGINAL, 20, true), followed(ORIGINAL)],
            expect: continues(ORIGINAL, 20, Some(Original { reading: 7 })),
        },
        Case {
            name: "of two truncations with the same head, the latest",
            first_bytes: ORIGINAL,
            size: 40,
            undecided_for: now,
            candidates: vec![
                truncated(ORIGINAL, 10, false),
                truncated(ORIGINAL, 30, true),
            ],
            expect: continues(ORIGINAL, 30, Some(Original { reading: 7 })),
        },
        Case {
            name: "a copy still being compared after its wait ran out",
            first_bytes: ORIGINAL,
            size: 40,
            undecided_for: PATIENCE * 3,
            candidates: vec![truncated(ORIGINAL, 20, true)],
            expect: continues(ORIGINAL, 20, Some(Original { reading: 7 })),
        },
    ]);
}

#[test]
fn a_short_head_stands_for_a_truncated_file_only_if_nothing_past_it_was_read() {
    let now = Duration::ZERO;
    let short: &'static [u8] = b"line 000001\n";
    check(vec![
        Case {
            name: "a file shorter than the fingerprint, read to its end, then truncated",
            first_bytes: short,
            size: 12,
            undecided_for: now,
            candidates: vec![truncated(short, 12, true)],
            expect: continues(short, 12, Some(Original { reading: 7 })),
        },
        Case {
            name: "a short head taken before the file grew and was read past it",
            first_bytes: ORIGINAL,
            size: 40,
            undecided_for: now,
            candidates: vec![truncated(short, 30, true)],
            expect: CopyDecision::NotACopy,
        },
        Case {
            name: "a longer head wins over a shorter one that also matches",
            first_bytes: ORIGINAL,
            size: 40,
            undecided_for: now,
            candidates: vec![truncated(ORIGINAL, 25, true), truncated(short, 12, false)],
            expect: continues(ORIGINAL, 25, Some(Original { reading: 7 })),
        },
    ]);
}

#[test]
fn a_file_too_short_to_compare_that_begins_like_a_known_one_is_looked_at_again() {
    let now = Duration::ZERO;
    check(vec![
        Case {
            name: "an empty file, as `cp` creates it, while a followed file was read here",
            first_bytes: b"",
            size: 0,
            undecided_for: now,
            candidates: vec![followed(ORIGINAL)],
            expect: CopyDecision::MaybeBeingWritten {
                like: like("/log/app.log"),
            },
        },
        Case {
            name: "a copy being written, shorter than the truncated file's head",
            first_bytes: b"line 000001 aa",
            size: 14,
            undecided_for: now,
            candidates: vec![truncated(ORIGINAL, 40, true)],
            expect: CopyDecision::MaybeBeingWritten {
                like: like("/log/app.log"),
            },
        },
        Case {
            name: "a copy being written, shorter than a followed file's short head",
            first_bytes: b"line 0000",
            size: 9,
            undecided_for: now,
            candidates: vec![followed(b"line 000001 aaaaaaa\n")],
            expect: CopyDecision::MaybeBeingWritten {
                like: like("/log/app.log"),
            },
        },
        Case {
            name: "a file followed while empty (no head yet): any file shorter than the \
                   fingerprint may be its copy being written",
            first_bytes: b"line 0000",
            size: 9,
            undecided_for: now,
            candidates: vec![followed(b"")],
            expect: CopyDecision::MaybeBeingWritten {
                like: like("/log/app.log"),
            },
        },
        Case {
            name: "a file followed while empty, and a new file as long as the fingerprint",
            first_bytes: ORIGINAL,
            size: 40,
            undecided_for: now,
            candidates: vec![followed(b"")],
            expect: CopyDecision::NotACopy,
        },
        Case {
            name: "still short once the wait ran out: compared by head, like none",
            first_bytes: b"line 000001 aa",
            size: 14,
            undecided_for: PATIENCE,
            candidates: vec![truncated(ORIGINAL, 40, true)],
            expect: CopyDecision::NotACopy,
        },
        Case {
            name: "still empty once the wait ran out",
            first_bytes: b"",
            size: 0,
            undecided_for: PATIENCE,
            candidates: vec![followed(ORIGINAL)],
            expect: CopyDecision::NotACopy,
        },
    ]);
}

#[test]
fn a_file_like_a_followed_one_waits_to_see_whether_that_one_is_truncated() {
    let now = Duration::ZERO;
    check(vec![
        Case {
            name: "starts like a followed file",
            first_bytes: ORIGINAL,
            size: 40,
            undecided_for: now,
            candidates: vec![followed(ORIGINAL)],
            expect: CopyDecision::StartsLikeFollowed {
                like: like("/log/app.log"),
            },
        },
        Case {
            name: "starts like what a followed file holds on disk now (truncated and written \
                   again before its tailer looked)",
            first_bytes: OTHER,
            size: 40,
            undecided_for: now,
            candidates: vec![followed(ORIGINAL), followed_by_head(OTHER, "/log/now.log")],
            expect: CopyDecision::StartsLikeFollowed {
                like: like("/log/now.log"),
            },
        },
        Case {
            name: "starts like a checkpointed file not opened yet",
            first_bytes: ORIGINAL,
            size: 40,
            undecided_for: PATIENCE / 2,
            candidates: vec![followed_by_head(ORIGINAL, "/log/old.log")],
            expect: CopyDecision::StartsLikeFollowed {
                like: like("/log/old.log"),
            },
        },
        Case {
            name: "the followed file was not truncated within the wait: a file of its own",
            first_bytes: ORIGINAL,
            size: 40,
            undecided_for: PATIENCE,
            candidates: vec![followed(ORIGINAL)],
            expect: CopyDecision::OwnFile {
                like: like("/log/app.log"),
            },
        },
    ]);
}

#[test]
fn the_comparison_is_reported_only_when_heads_were_compared() {
    let rules = CopyRules {
        fingerprint_bytes: FINGERPRINT,
        patience: PATIENCE,
    };
    let new = |first_bytes: &'static [u8]| NewFile {
        first_bytes: &first_bytes[..first_bytes.len().min(FINGERPRINT)],
        size: first_bytes.len() as u64,
        undecided_for: Duration::ZERO,
    };
    let compared = |new: NewFile<'_>, candidates| decide(&new, candidates, &rules).comparison;
    assert_eq!(
        compared(new(ORIGINAL), vec![]),
        None,
        "nothing to compare with"
    );
    assert_eq!(
        compared(new(b""), vec![followed(ORIGINAL)]),
        None,
        "waiting for a copy being written"
    );
    assert_eq!(
        compared(
            new(ORIGINAL),
            vec![truncated(ORIGINAL, 20, true), followed(OTHER)]
        ),
        Some(Comparison {
            compared: 2,
            matched: 1
        })
    );
    assert_eq!(
        compared(new(OTHER), vec![truncated(ORIGINAL, 20, true)]),
        Some(Comparison {
            compared: 1,
            matched: 0
        })
    );
}
