use super::*;

const CURSOR_TEXT: &str = "s=f4d1;i=2;b=0123;m=3e9;t=60a24181e4001;x=f69b";

fn field(name: &str, value: &[u8]) -> Field {
    Field {
        name: name.into(),
        value: value.to_vec(),
        cut: false,
    }
}

fn fields(more: &[(&str, &[u8])]) -> Vec<Field> {
    let mut fields = vec![field(CURSOR, CURSOR_TEXT.as_bytes())];
    fields.extend(more.iter().map(|(name, value)| field(name, value)));
    fields
}

fn record(entry: &Entry) -> Map<String, Value> {
    match serde_json::from_slice(&entry.json) {
        Ok(Value::Object(record)) => record,
        other => panic!("not an object: {other:?}"),
    }
}

#[test]
fn fields_are_kept_in_order_and_the_time_is_rfc_3339() {
    let entry = entry_of(
        fields(&[
            ("__REALTIME_TIMESTAMP", b"1700000000123456"),
            ("MESSAGE", "disk 93% full".as_bytes()),
            ("PRIORITY", b"4"),
            ("_SYSTEMD_UNIT", b"nginx.service"),
        ]),
        1024,
    )
    .expect("entry");
    assert_eq!(entry.cursor, CURSOR_TEXT);
    assert!(!entry.truncated);
    let record = record(&entry);
    assert_eq!(
        record.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "__CURSOR",
            "__REALTIME_TIMESTAMP",
            "MESSAGE",
            "PRIORITY",
            "_SYSTEMD_UNIT"
        ]
    );
    assert_eq!(record["MESSAGE"], "disk 93% full");
    assert_eq!(record["PRIORITY"], "4");
    assert_eq!(
        record["__REALTIME_TIMESTAMP"],
        "2023-11-14T22:13:20.123456Z"
    );
    assert_eq!(record["__CURSOR"], CURSOR_TEXT);
    assert!(!record.contains_key(BASE64_FIELDS) && !record.contains_key(TRUNCATED_FIELDS));
}

#[test]
fn bytes_are_base64_and_named_and_a_repeated_field_is_a_list() {
    let entry = entry_of(
        fields(&[
            ("DUMP", &[0, 159, 146, 150, 10]),
            ("TAG", b"one"),
            ("TAG", &[1, 2]),
            ("NOTE", b"line one\n\tline two\r\n"),
            ("BELL", b"ring\x07"),
        ]),
        1024,
    )
    .expect("entry");
    let record = record(&entry);
    assert_eq!(record["DUMP"], "AJ+Slgo=");
    // A field holding bytes is base64 in every value, text ones too.
    assert_eq!(record["TAG"], serde_json::json!(["b25l", "AQI="]));
    assert_eq!(record["NOTE"], "line one\n\tline two\r\n");
    assert_eq!(record["BELL"], "cmluZwc=");
    assert_eq!(
        record[BASE64_FIELDS],
        serde_json::json!(["DUMP", "TAG", "BELL"])
    );
}

#[test]
fn the_largest_fields_are_cut_to_fit_and_named() {
    let message = "m".repeat(5000);
    let dump = vec![7u8; 3000];
    let entry = entry_of(
        fields(&[
            ("MESSAGE", message.as_bytes()),
            ("DUMP", &dump),
            ("_HOSTNAME", b"web-1"),
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
    let entry = entry_of(fields(&[("MESSAGE", message.as_bytes())]), 801).expect("entry");
    let record = record(&entry);
    assert!(record["MESSAGE"]
        .as_str()
        .expect("text")
        .chars()
        .all(|c| c == 'é'));
}

#[test]
fn an_entry_without_a_cursor_or_too_long_even_cut_is_told() {
    assert_eq!(
        entry_of(vec![field("MESSAGE", b"x")], 1024),
        Err(EntryError::NoCursor)
    );
    // Only the cursor, longer than the limit: nothing can be cut.
    assert_eq!(
        entry_of(fields(&[]), 20),
        Err(EntryError::TooLong {
            max_bytes: 20,
            cursor: CURSOR_TEXT.into()
        })
    );
}

#[test]
fn long_values_are_cut_to_one_length_and_a_value_cut_when_read_is_named() {
    let long = "a".repeat(3000);
    let longer = "b".repeat(6000);
    let mut read_cut = field("DUMP_START", b"only the start");
    read_cut.cut = true;
    let mut all = fields(&[("ONE", long.as_bytes()), ("TWO", longer.as_bytes())]);
    all.push(read_cut);
    let entry = entry_of(all, 4096).expect("entry");
    let record = record(&entry);
    let one = record["ONE"].as_str().expect("text").len();
    let two = record["TWO"].as_str().expect("text").len();
    // Both cut, to the same length, as long as the limit allows.
    assert_eq!(one, two);
    assert!(
        one > 1500 && entry.json.len() < 4096,
        "{one} of {}",
        entry.json.len()
    );
    assert_eq!(
        record[TRUNCATED_FIELDS],
        serde_json::json!(["DUMP_START", "TWO", "ONE"])
    );
}

#[test]
fn a_large_entry_is_cut_in_a_few_rounds_not_one_round_a_field() {
    // 200 fields of 50 KB: cutting one field a round would serialize 10 MB 200 times.
    let value = vec![b'v'; 50_000];
    let names: Vec<String> = (0..200).map(|n| format!("F{n}")).collect();
    let many: Vec<(&str, &[u8])> = names
        .iter()
        .map(|name| (name.as_str(), value.as_slice()))
        .collect();
    let entry = entry_of(fields(&many), 1_048_576).expect("entry");
    assert!(entry.truncated && entry.json.len() < 1_048_576);
    let record = record(&entry);
    assert_eq!(record[TRUNCATED_FIELDS].as_array().map(Vec::len), Some(200));
}
