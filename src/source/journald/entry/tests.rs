use super::*;

const CURSOR_TEXT: &str = "s=f4d1;i=2;b=0123;m=3e9;t=60a24181e4001;x=f69b";

fn line(fields: &[(&str, Value)]) -> Vec<u8> {
    let mut object = Map::new();
    object.insert(CURSOR.into(), Value::String(CURSOR_TEXT.into()));
    for (name, value) in fields {
        object.insert((*name).into(), value.clone());
    }
    serde_json::to_vec(&object).expect("JSON")
}

fn record(entry: &Entry) -> Map<String, Value> {
    match serde_json::from_slice(&entry.json) {
        Ok(Value::Object(record)) => record,
        other => panic!("not an object: {other:?}"),
    }
}

#[test]
fn fields_are_kept_and_the_time_is_rfc_3339() {
    let entry = entry_of(
        &line(&[
            ("MESSAGE", "disk 93% full".into()),
            ("PRIORITY", "4".into()),
            ("_SYSTEMD_UNIT", "nginx.service".into()),
            ("__REALTIME_TIMESTAMP", "1700000000123456".into()),
        ]),
        1024,
    )
    .expect("entry");
    assert_eq!(entry.cursor, CURSOR_TEXT);
    assert!(!entry.truncated);
    let record = record(&entry);
    assert_eq!(record["MESSAGE"], "disk 93% full");
    assert_eq!(record["PRIORITY"], "4");
    assert_eq!(record["_SYSTEMD_UNIT"], "nginx.service");
    assert_eq!(
        record["__REALTIME_TIMESTAMP"],
        "2023-11-14T22:13:20.123456Z"
    );
    assert_eq!(record["__CURSOR"], CURSOR_TEXT);
    assert!(!record.contains_key(BASE64_FIELDS) && !record.contains_key(TRUNCATED_FIELDS));
}

#[test]
fn bytes_are_base64_and_named() {
    let bytes = Value::Array(
        [0u8, 159, 146, 150, 10]
            .iter()
            .map(|b| (*b).into())
            .collect(),
    );
    let repeated = Value::Array(vec!["one".into(), Value::Array(vec![1.into(), 2.into()])]);
    let entry = entry_of(
        &line(&[("DUMP", bytes), ("TAG", repeated), ("MESSAGE", "x".into())]),
        1024,
    )
    .expect("entry");
    let record = record(&entry);
    assert_eq!(record["DUMP"], "AJ+Slgo=");
    assert_eq!(record["TAG"], serde_json::json!(["one", "AQI="]));
    assert_eq!(record["MESSAGE"], "x");
    assert_eq!(record[BASE64_FIELDS], serde_json::json!(["DUMP", "TAG"]));
}

#[test]
fn the_largest_fields_are_cut_to_fit_and_named() {
    let message = "m".repeat(5000);
    let dump = Value::Array(vec![7.into(); 3000]);
    let entry = entry_of(
        &line(&[
            ("MESSAGE", message.clone().into()),
            ("DUMP", dump),
            ("_HOSTNAME", "web-1".into()),
        ]),
        2048,
    )
    .expect("entry");
    assert!(entry.truncated);
    assert!(entry.json.len() < 2048, "{} bytes", entry.json.len());
    let record = record(&entry);
    let cut_message = record["MESSAGE"].as_str().expect("text");
    assert!(message.starts_with(cut_message) && cut_message.len() < message.len());
    let cut_dump = record["DUMP"].as_str().expect("base64");
    assert_eq!(cut_dump.len() % 4, 0);
    assert!(base64::engine::general_purpose::STANDARD
        .decode(cut_dump)
        .is_ok());
    assert_eq!(record["_HOSTNAME"], "web-1");
    assert_eq!(record["__CURSOR"], CURSOR_TEXT);
    let cut = record[TRUNCATED_FIELDS].as_array().expect("names");
    assert!(cut.contains(&"MESSAGE".into()) && cut.contains(&"DUMP".into()));
}

#[test]
fn a_cut_never_splits_a_character() {
    let message = "é".repeat(800);
    let entry = entry_of(&line(&[("MESSAGE", message.into())]), 801).expect("entry");
    let record = record(&entry);
    assert!(record["MESSAGE"]
        .as_str()
        .expect("text")
        .chars()
        .all(|c| c == 'é'));
}

#[test]
fn what_is_not_an_entry_is_told() {
    assert!(matches!(
        entry_of(b"not json", 1024),
        Err(EntryError::NotAnObject(_))
    ));
    assert!(matches!(
        entry_of(b"[1,2]", 1024),
        Err(EntryError::NotAnObject(_))
    ));
    assert_eq!(
        entry_of(br#"{"MESSAGE":"x"}"#, 1024),
        Err(EntryError::NoCursor)
    );
    // Only the cursor, longer than the limit: nothing can be cut.
    assert_eq!(
        entry_of(&line(&[]), 20),
        Err(EntryError::TooLong {
            max_bytes: 20,
            cursor: CURSOR_TEXT.into()
        })
    );
}
