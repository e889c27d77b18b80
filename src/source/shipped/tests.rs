use std::io::Write;

use super::*;

const IDLE: Duration = Duration::from_secs(300);

fn facts(acknowledged: Option<u64>, size: u64, newest: bool, renamed: bool, idle: u64) -> Facts {
    Facts {
        acknowledged,
        size,
        newest,
        renamed,
        idle: Some(Duration::from_secs(idle)),
    }
}

#[test]
fn a_file_is_done_with_only_when_acknowledged_to_its_size_not_newest_and_no_longer_written() {
    use Verdict::*;
    let cases = [
        // acknowledged, size, newest, renamed, idle seconds → verdict
        (
            Some(100),
            100,
            false,
            true,
            10,
            Act,
            "rotated away, all acknowledged, quiet since",
        ),
        (
            Some(100),
            100,
            false,
            true,
            9,
            MaybeWritten,
            "rotated away moments ago: its writer may not have reopened its log yet",
        ),
        (
            Some(100),
            100,
            false,
            false,
            300,
            Act,
            "idle for exactly the idle time",
        ),
        (Some(100), 100, false, false, 9999, Act, "long idle"),
        (
            Some(100),
            100,
            false,
            false,
            299,
            MaybeWritten,
            "not idle long enough",
        ),
        (
            Some(99),
            100,
            false,
            true,
            9999,
            Unacknowledged,
            "last line in flight",
        ),
        (
            None,
            100,
            false,
            true,
            9999,
            Unacknowledged,
            "no checkpoint: never read",
        ),
        (
            Some(120),
            100,
            false,
            true,
            9999,
            Unacknowledged,
            "shrank since",
        ),
        (
            Some(100),
            100,
            true,
            true,
            9999,
            Newest,
            "newest, even rotated and idle",
        ),
        (Some(100), 100, true, false, 9999, Newest, "newest and idle"),
        (Some(0), 0, false, false, 9999, Act, "an empty idle file"),
    ];
    for (acknowledged, size, newest, renamed, idle, want, case) in cases {
        let got = decide(facts(acknowledged, size, newest, renamed, idle), IDLE);
        assert_eq!(got, want, "{case}");
    }
    let unknown_time = Facts {
        idle: None,
        ..facts(Some(100), 100, false, false, 0)
    };
    assert_eq!(decide(unknown_time, IDLE), MaybeWritten);
}

fn at(seconds: u64) -> Option<SystemTime> {
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
}

fn found(path: &str, modified: Option<SystemTime>, renamed: bool) -> Match<'_> {
    Match {
        path: Path::new(path),
        modified,
        renamed,
    }
}

#[test]
fn the_newest_match_of_each_glob_is_protected() {
    let patterns = ["/logs/app.log*".to_owned(), "/logs/web-*.log".to_owned()];
    let files = [
        found("/logs/app.log", at(300), false),
        found("/logs/app.log.1", at(200), true),
        found("/logs/app.log.2", at(100), false),
        found("/logs/web-1.log", at(50), false),
        found("/logs/web-2.log", at(50), false),
        found("/logs/app.log.3", None, false),
        found("/other/app.log", at(1), false),
    ];
    let newest = newest_of_globs(&patterns, &files);
    assert_eq!(
        newest,
        [true, false, false, true, true, true, true],
        "equally new files are all newest; no time or no glob: left alone"
    );
}

#[test]
fn of_files_modified_at_the_same_instant_the_one_renamed_away_is_not_the_newest() {
    let patterns = ["/logs/app.log*".to_owned()];
    let files = [
        found("/logs/app.log.1", at(300), true),
        found("/logs/app.log", at(300), false),
    ];
    assert_eq!(newest_of_globs(&patterns, &files), [false, true]);
    let later = [
        found("/logs/app.log.1", at(301), true),
        found("/logs/app.log", at(300), false),
    ];
    assert_eq!(
        newest_of_globs(&patterns, &later),
        [true, false],
        "written after the new file: still written to"
    );
}

#[test]
fn a_glob_star_does_not_cross_directories() {
    let patterns = ["/logs/*.log".to_owned()];
    let files = [
        found("/logs/a.log", at(10), false),
        found("/logs/old/b.log", at(20), false),
    ];
    assert_eq!(newest_of_globs(&patterns, &files), [true, true]);
}

/// A file with `bytes`, its identity and head as the checkpoint store knows them.
fn written(dir: &Path, name: &str, bytes: &[u8]) -> (PathBuf, FileId, Option<Head>) {
    let path = dir.join(name);
    let mut file = File::create(&path).expect("create");
    file.write_all(bytes).expect("write");
    drop(file);
    let metadata = fs::metadata(&path).expect("stat");
    let id = identity::id_at(&path, &metadata).expect("id");
    (path, id, identity::head_of_bytes(bytes))
}

#[test]
fn delete_removes_the_file_acknowledged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, id, head) = written(dir.path(), "app.log.1", b"one\ntwo\n");
    let outcome = act(&ShippedFiles::Delete, &path, id, 8, head).expect("delete");
    assert_eq!(outcome, Outcome::Deleted);
    assert!(!path.exists());
}

#[test]
fn a_file_that_grew_or_was_replaced_since_is_left_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, id, head) = written(dir.path(), "app.log.1", b"one\ntwo\n");
    assert_eq!(
        act(&ShippedFiles::Delete, &path, id, 4, head).expect("checked"),
        Outcome::Changed,
        "grew past the acknowledged size"
    );
    let other = identity::head_of_bytes(b"uno\ndos\n");
    assert_eq!(
        act(&ShippedFiles::Delete, &path, id, 8, other).expect("checked"),
        Outcome::Changed,
        "starts otherwise than the file acknowledged"
    );
    assert_eq!(
        act(&ShippedFiles::Delete, &path, id, 8, None).expect("checked"),
        Outcome::Changed,
        "no head known for bytes acknowledged"
    );
    assert!(path.exists());
}

#[test]
fn move_keeps_the_name_and_adds_a_suffix_when_it_is_taken() {
    let dir = tempfile::tempdir().expect("temp dir");
    let into = dir.path().join("done");
    fs::create_dir(&into).expect("mkdir");
    let action = ShippedFiles::Move(into.clone());
    let (path, id, head) = written(dir.path(), "app.log.1", b"first\n");
    let outcome = act(&action, &path, id, 6, head).expect("move");
    assert_eq!(outcome, Outcome::Moved(into.join("app.log.1")));
    assert!(!path.exists());

    let (path, id, head) = written(dir.path(), "app.log.1", b"second\n");
    let outcome = act(&action, &path, id, 7, head).expect("move");
    assert_eq!(outcome, Outcome::Moved(into.join("app.log.1-1")));
    assert_eq!(
        fs::read(into.join("app.log.1")).expect("read"),
        b"first\n",
        "nothing overwritten"
    );
    assert_eq!(
        fs::read(into.join("app.log.1-1")).expect("read"),
        b"second\n"
    );
}

#[test]
fn a_copy_across_filesystems_replaces_the_original() {
    let dir = tempfile::tempdir().expect("temp dir");
    let into = dir.path().join("done");
    fs::create_dir(&into).expect("mkdir");
    let (path, _, _) = written(dir.path(), "app.log.1", b"lines\n");
    fs::write(into.join("app.log.1"), b"an earlier one\n").expect("write");
    // A link planted where an older kinship put its temporary copy changes nothing.
    #[cfg(unix)]
    std::os::unix::fs::symlink(&path, into.join(".app.log.1.kinship-partial")).expect("link");
    let to = copy_then_remove(&path, &into, "app.log.1").expect("copy");
    assert_eq!(
        to,
        into.join("app.log.1-1"),
        "the file there is not replaced"
    );
    assert!(!path.exists());
    assert_eq!(fs::read(&to).expect("read"), b"lines\n");
    assert_eq!(
        fs::read(into.join("app.log.1")).expect("read"),
        b"an earlier one\n"
    );
    let partial = fs::read_dir(&into)
        .expect("list")
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.contains("kinship-partial-")
        })
        .count();
    assert_eq!(partial, 0, "no temporary file left");
}

#[test]
fn a_move_never_replaces_a_file_of_the_same_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let into = dir.path().join("done");
    fs::create_dir(&into).expect("mkdir");
    let (first, _, _) = written(dir.path(), "app.log.1", b"first\n");
    let taken = move_into(&first, &into).expect("moved");
    let other = dir.path().join("b");
    fs::create_dir(&other).expect("mkdir");
    let (second, _, _) = written(&other, "app.log.1", b"second\n");
    let moved = move_into(&second, &into).expect("moved");
    assert_eq!(taken, into.join("app.log.1"));
    assert_eq!(moved, into.join("app.log.1-1"));
    assert_eq!(fs::read(&taken).expect("read"), b"first\n");
    assert_eq!(fs::read(&moved).expect("read"), b"second\n");
    assert!(!first.exists() && !second.exists());
}

#[cfg(unix)]
#[test]
fn a_failure_is_an_error_naming_the_cause_and_the_file_stays() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = dir.path().join("logs");
    fs::create_dir(&logs).expect("mkdir");
    let (path, id, head) = written(&logs, "app.log.1", b"x\n");
    fs::set_permissions(&logs, fs::Permissions::from_mode(0o555)).expect("chmod");
    let result = act(&ShippedFiles::Delete, &path, id, 2, head);
    fs::set_permissions(&logs, fs::Permissions::from_mode(0o755)).expect("chmod");
    // Root may delete anyway: then there is nothing to check.
    if let Err(error) = result {
        assert!(matches!(error, ShipError::Delete(_)), "{error}");
        assert!(error.to_string().starts_with("cannot delete the file"));
        assert!(path.exists());
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_move_to_another_filesystem_copies_then_removes() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("temp dir");
    // /dev/shm is a tmpfs on most Linux hosts; where it shares the temp dir's device (or is
    // missing), the rename path is what runs, and the other tests cover it.
    let Ok(into) = tempfile::tempdir_in("/dev/shm") else {
        return;
    };
    let device = |path: &Path| fs::metadata(path).map(|metadata| metadata.dev()).ok();
    if device(dir.path()) == device(into.path()) {
        return;
    }
    let (path, id, head) = written(dir.path(), "app.log.1", b"across\n");
    let action = ShippedFiles::Move(into.path().to_path_buf());
    let outcome = act(&action, &path, id, 7, head).expect("move across filesystems");
    assert_eq!(outcome, Outcome::Moved(into.path().join("app.log.1")));
    assert!(!path.exists());
    assert_eq!(
        fs::read(into.path().join("app.log.1")).expect("read"),
        b"across\n"
    );
    assert_eq!(fs::read_dir(into.path()).expect("list").count(), 1);
}
