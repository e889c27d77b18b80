use super::copies::MAX_COPIES_KEPT;
use super::*;

fn file(key: u64, inode: u64) -> Arc<SourceFile> {
    Arc::new(SourceFile {
        key,
        flow: Arc::from("app"),
        id: FileId { device: 1, inode },
        head: None,
        path: format!("/logs/{inode}.log").into(),
    })
}

fn range(file: &Arc<SourceFile>, start: u64, end: u64) -> FileRange {
    FileRange {
        file: Arc::clone(file),
        start,
        end,
    }
}

fn delivered(tracker: &mut AckTracker, ranges: Vec<FileRange>) -> u64 {
    tracker.apply(Ack::Delivered(ranges))
}

#[test]
fn out_of_order_acknowledgements_advance_only_the_contiguous_prefix() {
    let a = file(1, 10);
    let mut tracker = AckTracker::new(Vec::new());
    tracker.apply(Ack::Opened {
        file: Arc::clone(&a),
        offset: 0,
        original: None,
    });
    let id = a.id;
    assert_eq!(delivered(&mut tracker, vec![range(&a, 200, 300)]), 0);
    assert_eq!(delivered(&mut tracker, vec![range(&a, 100, 200)]), 0);
    assert_eq!(tracker.checkpoint("app", id), Some(0));
    // The first call finishes last: everything up to 300 is now delivered.
    assert_eq!(delivered(&mut tracker, vec![range(&a, 0, 100)]), 300);
    assert_eq!(tracker.checkpoint("app", id), Some(300));
}

#[test]
fn a_released_flow_keeps_its_checkpoints_and_ignores_late_acknowledgements() {
    let a = file(1, 10);
    let other = Arc::new(SourceFile {
        flow: Arc::from("web"),
        ..(*file(2, 20)).clone()
    });
    let mut tracker = AckTracker::new(Vec::new());
    for (f, offset) in [(&a, 0), (&other, 0)] {
        tracker.apply(Ack::Opened {
            file: Arc::clone(f),
            offset,
            original: None,
        });
    }
    delivered(&mut tracker, vec![range(&a, 0, 100)]);
    delivered(&mut tracker, vec![range(&other, 0, 50)]);
    // [200, 300) was delivered, [100, 200) never will be: the flow stopped.
    delivered(&mut tracker, vec![range(&a, 200, 300)]);
    let released = tracker.release_flow("app");
    assert_eq!(released.len(), 1);
    assert_eq!((released[0].id, released[0].offset), (a.id, 100));
    // A late acknowledgement of the stopped reading moves nothing.
    assert_eq!(delivered(&mut tracker, vec![range(&a, 100, 200)]), 0);
    assert_eq!(tracker.checkpoint("app", a.id), Some(100));
    // The flow started again reads from 100, as a new reading.
    let again = file(3, 10);
    tracker.apply(Ack::Opened {
        file: Arc::clone(&again),
        offset: 100,
        original: None,
    });
    assert_eq!(delivered(&mut tracker, vec![range(&again, 100, 250)]), 150);
    assert_eq!(tracker.checkpoint("app", a.id), Some(250));
    // Other flows are untouched.
    assert_eq!(delivered(&mut tracker, vec![range(&other, 50, 60)]), 10);
}

#[test]
fn a_record_being_retried_holds_the_watermark_back() {
    let a = file(1, 10);
    let mut tracker = AckTracker::new(Vec::new());
    tracker.apply(Ack::Opened {
        file: Arc::clone(&a),
        offset: 1000,
        original: None,
    });
    // Batch 1 covers [1000, 1500) and is being retried; batches 2..=5 finish.
    for start in (1500..3500).step_by(500) {
        delivered(&mut tracker, vec![range(&a, start, start + 500)]);
    }
    assert_eq!(tracker.checkpoint("app", a.id), Some(1000));
    delivered(&mut tracker, vec![range(&a, 1000, 1500)]);
    assert_eq!(tracker.checkpoint("app", a.id), Some(3500));
}

#[test]
fn one_batch_may_cover_several_files() {
    let (a, b) = (file(1, 10), file(2, 20));
    let mut tracker = AckTracker::new(Vec::new());
    tracker.apply(Ack::Opened {
        file: Arc::clone(&a),
        offset: 0,
        original: None,
    });
    tracker.apply(Ack::Opened {
        file: Arc::clone(&b),
        offset: 50,
        original: None,
    });
    delivered(
        &mut tracker,
        vec![range(&a, 0, 10), range(&b, 50, 60), range(&a, 10, 20)],
    );
    assert_eq!(tracker.checkpoint("app", a.id), Some(20));
    assert_eq!(tracker.checkpoint("app", b.id), Some(60));
}

#[test]
fn a_truncated_file_read_again_ignores_its_earlier_reading_but_its_copy_learns_from_it() {
    let head = Head { len: 64, hash: 77 };
    let old = Arc::new(SourceFile {
        head: Some(head),
        ..(*file(1, 10)).clone()
    });
    let new = file(2, 10);
    let mut tracker = AckTracker::new(Vec::new());
    tracker.apply(Ack::Opened {
        file: Arc::clone(&old),
        offset: 0,
        original: None,
    });
    delivered(&mut tracker, vec![range(&old, 0, 500)]);
    // Read to 900 when truncated; [500, 900) still in flight.
    tracker.apply(Ack::Restarted {
        file: Arc::clone(&new),
        offset: 0,
        before: Some(CopyFrom { head, offset: 900 }),
    });
    assert_eq!(tracker.checkpoint("app", new.id), Some(0));
    let copy_from = |tracker: &AckTracker| {
        tracker
            .saved
            .get(&("app".to_owned(), new.id))
            .and_then(|saved| saved.copy_from.last().copied())
    };
    assert_eq!(copy_from(&tracker), Some(CopyFrom { head, offset: 500 }));
    delivered(&mut tracker, vec![range(&old, 500, 900)]);
    assert_eq!(
        tracker.checkpoint("app", new.id),
        Some(0),
        "late acks of the old reading do not move the new reading's checkpoint"
    );
    assert_eq!(copy_from(&tracker), Some(CopyFrom { head, offset: 900 }));
    delivered(&mut tracker, vec![range(&new, 0, 40)]);
    assert_eq!(tracker.checkpoint("app", new.id), Some(40));
    assert_eq!(copy_from(&tracker), Some(CopyFrom { head, offset: 900 }));
}

/// The original read to 900, of which `delivered` was delivered when it was truncated, and
/// its copy found and read from 900: `truncation_first` says whether the tracker hears of
/// the truncation before the copy's opening (the two come from different tailers, in
/// either order).
fn copy_of_a_truncated_file(
    delivered_before: u64,
    truncation_first: bool,
) -> (AckTracker, Arc<SourceFile>, Arc<SourceFile>) {
    let head = Head { len: 64, hash: 77 };
    let old = Arc::new(SourceFile {
        head: Some(head),
        ..(*file(1, 10)).clone()
    });
    let copy = Arc::new(SourceFile {
        head: Some(head),
        ..(*file(3, 11)).clone()
    });
    let mut tracker = AckTracker::new(Vec::new());
    tracker.apply(Ack::Opened {
        file: Arc::clone(&old),
        offset: 0,
        original: None,
    });
    delivered(&mut tracker, vec![range(&old, 0, delivered_before)]);
    let truncation = Ack::Restarted {
        file: file(2, 10),
        offset: 0,
        before: Some(CopyFrom { head, offset: 900 }),
    };
    let copy_opened = Ack::Opened {
        file: Arc::clone(&copy),
        offset: 900,
        original: Some(Original { reading: old.key }),
    };
    if truncation_first {
        tracker.apply(truncation);
        tracker.apply(copy_opened);
    } else {
        tracker.apply(copy_opened);
        tracker.apply(truncation);
    }
    (tracker, old, copy)
}

#[test]
fn a_copy_found_while_its_original_has_records_in_flight_is_checkpointed_where_they_are() {
    for truncation_first in [true, false] {
        let (mut tracker, old, copy) = copy_of_a_truncated_file(500, truncation_first);
        // Killed now, the copy must be read again from 500: [500, 900) is only in flight.
        assert_eq!(tracker.checkpoint("app", copy.id), Some(500));
        // The copy's own records delivered first do not move it past the original's.
        delivered(&mut tracker, vec![range(&copy, 900, 1000)]);
        assert_eq!(tracker.checkpoint("app", copy.id), Some(500));
        delivered(&mut tracker, vec![range(&old, 500, 700)]);
        assert_eq!(tracker.checkpoint("app", copy.id), Some(700));
        delivered(&mut tracker, vec![range(&old, 700, 900)]);
        assert_eq!(
            tracker.checkpoint("app", copy.id),
            Some(1000),
            "once the original's records are delivered, the copy's own count"
        );
        delivered(&mut tracker, vec![range(&copy, 1000, 1100)]);
        assert_eq!(tracker.checkpoint("app", copy.id), Some(1100));
    }
}

#[test]
fn a_copy_whose_original_was_delivered_already_starts_where_it_was_read_to() {
    for truncation_first in [true, false] {
        let (mut tracker, _, copy) = copy_of_a_truncated_file(900, truncation_first);
        assert_eq!(tracker.checkpoint("app", copy.id), Some(900));
        delivered(&mut tracker, vec![range(&copy, 900, 950)]);
        assert_eq!(tracker.checkpoint("app", copy.id), Some(950));
    }
}

#[test]
fn a_copy_waiting_for_its_original_moves_on_after_the_original_is_truncated_again() {
    let (mut tracker, old, copy) = copy_of_a_truncated_file(500, true);
    // The reading after the first truncation is truncated in turn.
    let second = Arc::new(SourceFile {
        head: Some(Head { len: 64, hash: 78 }),
        ..(*file(2, 10)).clone()
    });
    tracker.apply(Ack::Restarted {
        file: file(4, 10),
        offset: 0,
        before: second.head.map(|head| CopyFrom { head, offset: 0 }),
    });
    delivered(&mut tracker, vec![range(&copy, 900, 1000)]);
    assert_eq!(tracker.checkpoint("app", copy.id), Some(500));
    delivered(&mut tracker, vec![range(&old, 500, 900)]);
    assert_eq!(tracker.checkpoint("app", copy.id), Some(1000));
}

#[test]
fn a_copy_follows_its_original_reopened_under_a_new_key() {
    let head = Head { len: 64, hash: 77 };
    let old = Arc::new(SourceFile {
        head: Some(head),
        ..(*file(1, 10)).clone()
    });
    let copy = file(3, 11);
    let mut tracker = AckTracker::new(Vec::new());
    tracker.apply(Ack::Opened {
        file: Arc::clone(&old),
        offset: 0,
        original: None,
    });
    delivered(&mut tracker, vec![range(&old, 0, 500)]);
    tracker.apply(Ack::Opened {
        file: Arc::clone(&copy),
        offset: 900,
        original: Some(Original { reading: old.key }),
    });
    assert_eq!(tracker.checkpoint("app", copy.id), Some(500));
    // The original, parked and opened again before its truncation is known here.
    tracker.apply(Ack::Opened {
        file: Arc::new(SourceFile {
            key: 5,
            ..(*old).clone()
        }),
        offset: 900,
        original: None,
    });
    delivered(&mut tracker, vec![range(&old, 500, 900)]);
    assert_eq!(tracker.checkpoint("app", copy.id), Some(900));
}

#[test]
fn a_copy_reopened_while_waiting_for_its_original_keeps_waiting() {
    let (mut tracker, old, copy) = copy_of_a_truncated_file(500, true);
    delivered(&mut tracker, vec![range(&copy, 900, 1000)]);
    // Parked for another file's turn and opened again under a new key.
    let reopened = Arc::new(SourceFile {
        key: 4,
        ..(*copy).clone()
    });
    tracker.apply(Ack::Opened {
        file: Arc::clone(&reopened),
        offset: 1000,
        original: None,
    });
    assert_eq!(tracker.checkpoint("app", copy.id), Some(500));
    delivered(&mut tracker, vec![range(&old, 500, 900)]);
    assert_eq!(tracker.checkpoint("app", copy.id), Some(1000));
}

#[test]
fn the_latest_truncations_of_a_file_are_all_kept_for_their_copies() {
    let first = file(1, 10);
    let mut tracker = AckTracker::new(Vec::new());
    tracker.apply(Ack::Opened {
        file: Arc::clone(&first),
        offset: 0,
        original: None,
    });
    let truncations = MAX_COPIES_KEPT as u64 + 2;
    for number in 1..=truncations {
        let head = Head {
            len: 64,
            hash: number,
        };
        tracker.apply(Ack::Restarted {
            file: file(1 + number, 10),
            offset: 0,
            before: Some(CopyFrom { head, offset: 0 }),
        });
    }
    let saved = &tracker.saved[&("app".to_owned(), first.id)];
    let kept: Vec<u64> = saved.copy_from.iter().map(|copy| copy.head.hash).collect();
    let latest: Vec<u64> = (truncations + 1 - MAX_COPIES_KEPT as u64..=truncations).collect();
    assert_eq!(kept, latest, "the latest truncations, oldest first");
}

#[test]
fn a_file_found_again_while_its_records_are_in_flight_keeps_its_watermark() {
    let first = file(1, 10);
    let again = file(2, 10);
    let mut tracker = AckTracker::new(Vec::new());
    tracker.apply(Ack::Opened {
        file: Arc::clone(&first),
        offset: 0,
        original: None,
    });
    delivered(&mut tracker, vec![range(&first, 0, 100)]);
    // Released at 300 with [100, 300) in flight, then found again and read on from 300.
    tracker.apply(Ack::Opened {
        file: Arc::clone(&again),
        offset: 300,
        original: None,
    });
    assert_eq!(
        tracker.checkpoint("app", again.id),
        Some(100),
        "in-flight records hold it back"
    );
    delivered(&mut tracker, vec![range(&again, 300, 400)]);
    assert_eq!(tracker.checkpoint("app", again.id), Some(100));
    delivered(&mut tracker, vec![range(&first, 100, 300)]);
    assert_eq!(tracker.checkpoint("app", again.id), Some(400));
}

#[test]
fn an_inode_reused_after_a_delete_starts_a_new_reading() {
    let deleted = file(1, 10);
    let reused = file(2, 10);
    let mut tracker = AckTracker::new(Vec::new());
    tracker.apply(Ack::Opened {
        file: Arc::clone(&deleted),
        offset: 0,
        original: None,
    });
    tracker.apply(Ack::Closed {
        file: Arc::clone(&deleted),
        end: 500,
    });
    tracker.apply(Ack::Opened {
        file: Arc::clone(&reused),
        offset: 0,
        original: None,
    });
    delivered(&mut tracker, vec![range(&deleted, 0, 500)]);
    assert_eq!(
        tracker.checkpoint("app", reused.id),
        Some(0),
        "the deleted file's acks do not count"
    );
    delivered(&mut tracker, vec![range(&reused, 0, 50)]);
    assert_eq!(tracker.checkpoint("app", reused.id), Some(50));
}

#[test]
fn a_deleted_file_is_forgotten_once_delivered_to_its_end() {
    let a = file(1, 10);
    let mut tracker = AckTracker::new(Vec::new());
    tracker.apply(Ack::Opened {
        file: Arc::clone(&a),
        offset: 0,
        original: None,
    });
    tracker.apply(Ack::Closed {
        file: Arc::clone(&a),
        end: 100,
    });
    assert_eq!(
        tracker.checkpoint("app", a.id),
        Some(0),
        "kept while records are in flight"
    );
    delivered(&mut tracker, vec![range(&a, 0, 100)]);
    assert_eq!(tracker.checkpoint("app", a.id), None);
}

#[test]
fn loaded_checkpoints_are_kept_until_replaced_and_changes_are_reported_once() {
    let loaded = Checkpoint {
        flow: "app".into(),
        id: FileId {
            device: 1,
            inode: 99,
        },
        head: None,
        path: "/logs/old.log".into(),
        offset: 7,
        seen: unix_now(),
        copy_from: Vec::new(),
        cursor: None,
    };
    let mut tracker = AckTracker::new(vec![loaded.clone()]);
    assert_eq!(tracker.take_changes(), None);
    let a = file(1, 10);
    tracker.apply(Ack::Opened {
        file: Arc::clone(&a),
        offset: 0,
        original: None,
    });
    let written = tracker.take_changes().expect("changed");
    assert_eq!(written.len(), 2);
    assert!(written.contains(&loaded));
    assert_eq!(tracker.take_changes(), None);
    delivered(&mut tracker, vec![range(&a, 0, 10)]);
    let delta = tracker.take_delta().expect("changed");
    assert_eq!(tracker.take_delta(), None);
    tracker.mark_unwritten(&delta);
    assert_eq!(
        tracker.take_delta(),
        Some(delta),
        "the failed write's delta again"
    );
}

#[test]
fn a_delta_holds_what_changed_and_not_what_is_saved() {
    let files: Vec<Arc<SourceFile>> = (1..=1000).map(|inode| file(inode, inode)).collect();
    let mut tracker = AckTracker::new(Vec::new());
    for f in &files {
        tracker.apply(Ack::Opened {
            file: Arc::clone(f),
            offset: 0,
            original: None,
        });
    }
    assert_eq!(
        tracker.take_delta().map(|delta| delta.changed.len()),
        Some(1000)
    );
    delivered(&mut tracker, vec![range(&files[500], 0, 80)]);
    let delta = tracker.take_delta().expect("one file moved");
    assert_eq!(delta.changed.len(), 1);
    assert_eq!(
        (delta.changed[0].id, delta.changed[0].offset),
        (files[500].id, 80)
    );
    assert!(delta.removed.is_empty());
    // Out of order: nothing moves, so nothing is written.
    delivered(&mut tracker, vec![range(&files[7], 100, 200)]);
    assert_eq!(tracker.take_delta(), None);
    // A deleted file delivered to its end is forgotten: the delta names its key.
    tracker.apply(Ack::Closed {
        file: Arc::clone(&files[9]),
        end: 30,
    });
    delivered(&mut tracker, vec![range(&files[9], 0, 30)]);
    let delta = tracker.take_delta().expect("one file forgotten");
    assert!(delta.changed.is_empty());
    assert_eq!(delta.removed, vec![("app".to_owned(), files[9].id)]);
    assert_eq!(tracker.snapshot().len(), 999);
}

#[test]
fn expired_checkpoints_are_removed_in_the_delta() {
    let now = unix_now();
    let old = Checkpoint {
        flow: "app".into(),
        id: FileId {
            device: 1,
            inode: 5,
        },
        head: None,
        path: "/logs/5.log".into(),
        offset: 7,
        seen: now - 100,
        copy_from: Vec::new(),
        cursor: None,
    };
    let mut tracker = AckTracker::new(vec![old.clone()]);
    assert_eq!(
        tracker.expire(now, Duration::from_secs(10)),
        vec![old.clone()]
    );
    let delta = tracker.take_delta().expect("forgotten");
    assert_eq!(delta.removed, vec![("app".to_owned(), old.id)]);
}

#[test]
fn checkpoints_of_files_no_scan_finds_for_the_expiry_are_forgotten() {
    let day = 24 * 3600;
    let now = unix_now();
    let saved = |inode: u64, seen: u64| Checkpoint {
        flow: "app".into(),
        id: FileId { device: 1, inode },
        head: None,
        path: format!("/logs/{inode}.log").into(),
        offset: 7,
        seen,
        copy_from: Vec::new(),
        cursor: None,
    };
    let mut tracker = AckTracker::new(vec![
        saved(1, now - 10 * day),
        saved(2, now - 10 * day),
        saved(3, now - day),
    ]);
    // File 2 is found again by a scan; file 10 is being read.
    tracker.seen(
        "app",
        &[FileId {
            device: 1,
            inode: 2,
        }],
        now,
    );
    let a = file(1, 10);
    tracker.apply(Ack::Opened {
        file: Arc::clone(&a),
        offset: 0,
        original: None,
    });
    let expired = tracker.expire(now + 3 * day, Duration::from_secs(7 * day));
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].id.inode, 1);
    assert_eq!(
        tracker.checkpoint(
            "app",
            FileId {
                device: 1,
                inode: 2
            }
        ),
        Some(7)
    );
    assert_eq!(
        tracker.checkpoint(
            "app",
            FileId {
                device: 1,
                inode: 3
            }
        ),
        Some(7)
    );
    assert_eq!(tracker.checkpoint("app", a.id), Some(0));
    // The file being read is reported as seen by its flow's scans.
    tracker.seen("app", &[a.id], now + 29 * day);
    let later = tracker.expire(now + 30 * day, Duration::from_secs(7 * day));
    assert_eq!(later.len(), 2, "only the file seen lately is kept");
    assert_eq!(tracker.checkpoint("app", a.id), Some(0));
    // Once forgotten, its late acknowledgements change nothing.
    let gone = tracker.expire(now + 60 * day, Duration::from_secs(7 * day));
    assert_eq!(gone.len(), 1);
    assert_eq!(delivered(&mut tracker, vec![range(&a, 0, 10)]), 0);
    assert_eq!(tracker.checkpoint("app", a.id), None);
}

#[test]
fn a_longer_head_replaces_the_saved_one() {
    let a = file(1, 10);
    let mut tracker = AckTracker::new(Vec::new());
    tracker.apply(Ack::Opened {
        file: Arc::clone(&a),
        offset: 0,
        original: None,
    });
    let longer = Arc::new(SourceFile {
        key: a.key,
        flow: Arc::clone(&a.flow),
        id: a.id,
        head: Some(Head { len: 1024, hash: 5 }),
        path: a.path.clone(),
    });
    tracker.apply(Ack::Identified { file: longer });
    delivered(&mut tracker, vec![range(&a, 0, 10)]);
    let written = tracker.take_changes().expect("changed");
    assert_eq!(written[0].head, Some(Head { len: 1024, hash: 5 }));
    assert_eq!(written[0].offset, 10);
}

#[test]
fn the_acknowledged_offset_is_told_and_a_shipped_file_is_forgotten() {
    let a = file(1, 10);
    let b = file(2, 20);
    let mut tracker = AckTracker::new(Vec::new());
    for f in [&a, &b] {
        tracker.apply(Ack::Opened {
            file: Arc::clone(f),
            offset: 0,
            original: None,
        });
    }
    // [100, 200) is in flight: the offset told stops before it.
    delivered(&mut tracker, vec![range(&a, 0, 100), range(&a, 200, 300)]);
    let (reply, mut answer) = tokio::sync::oneshot::channel();
    let unknown = FileId {
        device: 1,
        inode: 99,
    };
    tracker.apply(Ack::AskAcknowledged {
        flow: Arc::from("app"),
        ids: vec![a.id, unknown],
        reply,
    });
    let told = answer.try_recv().expect("answered at once");
    assert_eq!(
        told,
        vec![
            Some(Acknowledged {
                offset: 100,
                head: None
            }),
            None
        ]
    );
    tracker.take_delta();
    tracker.apply(Ack::Shipped {
        flow: Arc::from("app"),
        id: a.id,
    });
    assert_eq!(tracker.checkpoint("app", a.id), None);
    let delta = tracker.take_delta().expect("the removal is written");
    assert_eq!(delta.removed, vec![("app".to_owned(), a.id)]);
    // Its reading ended: late acknowledgements bring nothing back.
    assert_eq!(delivered(&mut tracker, vec![range(&a, 100, 200)]), 0);
    assert_eq!(tracker.checkpoint("app", a.id), None);
    assert_eq!(tracker.checkpoint("app", b.id), Some(0));
}

#[test]
fn a_file_two_flows_follow_is_told_at_the_lesser_acknowledged_offset() {
    let app = file(1, 10);
    let audit = Arc::new(SourceFile {
        flow: Arc::from("audit"),
        ..(*file(2, 10)).clone()
    });
    let mut tracker = AckTracker::new(Vec::new());
    for f in [&app, &audit] {
        tracker.apply(Ack::Opened {
            file: Arc::clone(f),
            offset: 0,
            original: None,
        });
    }
    delivered(&mut tracker, vec![range(&app, 0, 300)]);
    delivered(&mut tracker, vec![range(&audit, 0, 120)]);
    let told = tracker.acknowledged("app", &[app.id]);
    assert_eq!(told[0].map(|acknowledged| acknowledged.offset), Some(120));
    delivered(&mut tracker, vec![range(&audit, 120, 300)]);
    let told = tracker.acknowledged("app", &[app.id]);
    assert_eq!(told[0].map(|acknowledged| acknowledged.offset), Some(300));
}

fn cursor_of(tracker: &AckTracker, file: &SourceFile) -> Option<String> {
    tracker
        .snapshot()
        .into_iter()
        .find(|saved| saved.id == file.id)
        .and_then(|saved| saved.cursor)
}

fn mark(tracker: &mut AckTracker, file: &Arc<SourceFile>, end: u64, cursor: &str) {
    tracker.apply(Ack::Marked {
        file: Arc::clone(file),
        end,
        cursor: cursor.into(),
    });
}

#[test]
fn a_cursor_is_kept_only_once_every_entry_before_it_is_delivered() {
    let journal = file(1, 10);
    let mut tracker = AckTracker::new(Vec::new());
    tracker.apply(Ack::Opened {
        file: Arc::clone(&journal),
        offset: 0,
        original: None,
    });
    mark(&mut tracker, &journal, 2, "c2");
    mark(&mut tracker, &journal, 5, "c5");
    mark(&mut tracker, &journal, 9, "c9");
    // The second block is delivered first: nothing is kept yet.
    delivered(&mut tracker, vec![range(&journal, 2, 5)]);
    assert_eq!(cursor_of(&tracker, &journal), None);
    // Then the first: both are, and the later cursor is the one kept.
    delivered(&mut tracker, vec![range(&journal, 0, 2)]);
    assert_eq!(cursor_of(&tracker, &journal).as_deref(), Some("c5"));
    // Part of the third block is not enough.
    delivered(&mut tracker, vec![range(&journal, 5, 7)]);
    assert_eq!(cursor_of(&tracker, &journal).as_deref(), Some("c5"));
    delivered(&mut tracker, vec![range(&journal, 7, 9)]);
    assert_eq!(cursor_of(&tracker, &journal).as_deref(), Some("c9"));
    assert_eq!(tracker.checkpoint("app", journal.id), Some(9));
}

#[test]
fn a_cursor_survives_a_new_reading_and_a_mark_at_the_watermark_is_kept_at_once() {
    let journal = file(1, 10);
    let loaded = Checkpoint {
        flow: "app".into(),
        id: journal.id,
        head: None,
        path: journal.path.clone(),
        offset: 40,
        seen: 1,
        copy_from: Vec::new(),
        cursor: Some("c40".into()),
    };
    let mut tracker = AckTracker::new(vec![loaded]);
    tracker.apply(Ack::Opened {
        file: Arc::clone(&journal),
        offset: 40,
        original: None,
    });
    assert_eq!(cursor_of(&tracker, &journal).as_deref(), Some("c40"));
    // A source that starts at the end names the last entry there, before sending anything.
    mark(&mut tracker, &journal, 40, "tail");
    assert_eq!(cursor_of(&tracker, &journal).as_deref(), Some("tail"));
    let delta = tracker.take_delta().expect("changed");
    assert_eq!(delta.changed[0].cursor.as_deref(), Some("tail"));
}
