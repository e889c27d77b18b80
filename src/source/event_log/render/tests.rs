//! Every event of the real logs in `../shared/fixtures/evtx/`, rendered from its XML, checked
//! against the same event as the `evtx` crate renders it to JSON straight from the binary
//! format: two renderings of one event that must agree on every `System` field and on the
//! names (and text values) of its `EventData`.

use std::path::PathBuf;

use serde_json::Value;

use super::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/evtx")
        .join(name)
}

/// Each event of `name` as (XML, the crate's own JSON), in record order, up to the first error.
fn events(name: &str) -> Vec<(String, Value)> {
    let path = fixture(name);
    let mut xml = evtx::EvtxParser::from_path(&path).expect("open fixture");
    let mut json = evtx::EvtxParser::from_path(&path).expect("open fixture");
    let xml: Vec<_> = xml.records().map_while(Result::ok).collect();
    let json: Vec<_> = json.records_json_value().map_while(Result::ok).collect();
    assert_eq!(
        xml.len(),
        json.len(),
        "{name}: both renderings read as many events"
    );
    xml.into_iter()
        .zip(json)
        .map(|(xml, json)| {
            assert_eq!(xml.event_record_id, json.event_record_id);
            (xml.data, json.data)
        })
        .collect()
}

/// `value` as text, as XML holds it.
fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// The `System` fields the record must hold, read from the crate's JSON of the same event.
fn expected_system(system: &Value) -> Vec<(&'static str, Value)> {
    let attribute = |element: &str, name: &str| system[element]["#attributes"][name].clone();
    let plain = |element: &str| match &system[element] {
        Value::Object(members) => members.get("#text").cloned().unwrap_or(Value::Null),
        other => other.clone(),
    };
    let as_string = |value: Value| match value {
        Value::Null => Value::Null,
        other => as_text(&other).map_or(other, Value::String),
    };
    vec![
        ("Provider", attribute("Provider", "Name")),
        ("ProviderGuid", attribute("Provider", "Guid")),
        ("EventID", plain("EventID")),
        ("Qualifiers", attribute("EventID", "Qualifiers")),
        ("Version", plain("Version")),
        ("Level", plain("Level")),
        ("Task", plain("Task")),
        ("Opcode", plain("Opcode")),
        ("Keywords", as_string(plain("Keywords"))),
        ("TimeCreated", attribute("TimeCreated", "SystemTime")),
        ("EventRecordID", plain("EventRecordID")),
        ("ActivityID", attribute("Correlation", "ActivityID")),
        ("ProcessID", attribute("Execution", "ProcessID")),
        ("ThreadID", attribute("Execution", "ThreadID")),
        ("Channel", as_string(plain("Channel"))),
        ("Computer", as_string(plain("Computer"))),
        ("UserID", attribute("Security", "UserID")),
    ]
}

/// Checks every event of `name`; returns how many there were.
fn check_log(name: &str) -> usize {
    let events = events(name);
    for (index, (xml, json)) in events.iter().enumerate() {
        let rendered = render(xml).unwrap_or_else(|error| panic!("{name} event {index}: {error}"));
        let event = &json["Event"];
        for (field, want) in expected_system(&event["System"]) {
            let got = rendered.record.get(field).cloned().unwrap_or(Value::Null);
            assert_eq!(
                got, want,
                "{name} event {index} (record {}): {field}",
                rendered.record_id
            );
        }
        assert_eq!(
            Some(rendered.record_id),
            event["System"]["EventRecordID"].as_u64()
        );
        check_event_data(name, index, &rendered, &event["EventData"]);
        assert_eq!(
            rendered.record.contains_key("UserData"),
            event.get("UserData").is_some(),
            "{name} event {index}: UserData"
        );
    }
    events.len()
}

/// Named `Data` items: the same names, and the same text where the crate gives a scalar.
fn check_event_data(name: &str, index: usize, rendered: &Rendered, want: &Value) {
    let Some(want) = want.as_object() else {
        return;
    };
    let got = rendered.record["EventData"]
        .as_object()
        .unwrap_or_else(|| panic!("{name} event {index}: EventData is an object"));
    for (key, value) in want.iter().filter(|(key, _)| !key.starts_with('#')) {
        let item = got
            .get(key)
            .unwrap_or_else(|| panic!("{name} event {index}: EventData.{key} is missing"));
        if let (Some(want), Value::String(got)) = (as_text(value), item) {
            assert_eq!(got, &want, "{name} event {index}: EventData.{key}");
        }
    }
}

#[test]
fn every_event_of_the_security_logs_renders_its_system_fields_and_data() {
    assert_eq!(check_log("post-Security.evtx"), 126);
    assert_eq!(check_log("Security_short_selected.evtx"), 7);
}

#[test]
fn every_event_of_the_system_log_renders_its_system_fields_and_data() {
    assert_eq!(check_log("system.evtx"), 1881);
}

#[test]
fn every_event_of_the_damaged_sysmon_log_before_the_damage_renders() {
    assert_eq!(check_log("sysmon.evtx"), 358);
}

#[test]
fn logon_events_carry_who_logged_on_how_and_from_where() {
    let logons: Vec<Rendered> = events("post-Security.evtx")
        .iter()
        .map(|(xml, _)| render(xml).expect("renders"))
        .filter(|event| event.record["EventID"] == 4624)
        .collect();
    assert_eq!(logons.len(), 25);
    for logon in &logons {
        let data = &logon.record["EventData"];
        for field in ["TargetUserName", "LogonType", "IpAddress"] {
            assert!(data[field].is_string(), "{field} in {}", logon.record_id);
        }
    }
    let first = &logons[0].record;
    assert_eq!(first["Channel"], "Security");
    assert_eq!(first["Provider"], "Microsoft-Windows-Security-Auditing");
    assert_eq!(first["EventData"]["TargetUserName"], "SYSTEM");
    assert_eq!(first["EventData"]["LogonType"], "0");
}

#[test]
fn unnamed_data_binary_and_user_data_keep_their_shape() {
    let xml = r#"<Event xmlns="http://schemas.microsoft.com/win/2004/08/events/event">
  <System>
    <Provider Name="Service Control Manager" EventSourceName="Service Control Manager"/>
    <EventID Qualifiers="16384">7036</EventID>
    <Level>4</Level>
    <TimeCreated SystemTime="2024-01-02T03:04:05.0000000Z"/>
    <EventRecordID>77</EventRecordID>
    <Channel>System</Channel>
    <Computer>host &amp; co</Computer>
  </System>
  <EventData>
    <Data>Windows Update</Data>
    <Data>running</Data>
    <Binary>770075006100</Binary>
  </EventData>
  <UserData>
    <LogFileCleared xmlns="http://manifests.microsoft.com/win/2004/08/windows/eventlog">
      <SubjectUserName>admin</SubjectUserName>
      <Item>a</Item>
      <Item>b</Item>
    </LogFileCleared>
  </UserData>
</Event>"#;
    let rendered = render(xml).expect("renders");
    assert_eq!(rendered.record_id, 77);
    assert_eq!(
        Value::Object(rendered.record),
        serde_json::json!({
            "Provider": "Service Control Manager",
            "EventSourceName": "Service Control Manager",
            "EventID": 7036,
            "Qualifiers": 16384,
            "Level": 4,
            "TimeCreated": "2024-01-02T03:04:05.0000000Z",
            "EventRecordID": 77,
            "Channel": "System",
            "Computer": "host & co",
            "EventData": {"Data": ["Windows Update", "running"], "Binary": "770075006100"},
            "UserData": {"LogFileCleared": {"SubjectUserName": "admin", "Item": ["a", "b"]}},
        })
    );
}

#[test]
fn what_is_not_an_event_is_told_apart() {
    assert!(matches!(render("<Event"), Err(RenderError::Xml(_))));
    assert!(matches!(
        render("<Other/>"),
        Err(RenderError::NotAnEvent(name)) if name == "Other"
    ));
    assert!(matches!(render("<Event/>"), Err(RenderError::NoSystem)));
    assert!(matches!(
        render("<Event><System><EventID>1</EventID></System></Event>"),
        Err(RenderError::NoRecordId)
    ));
}

#[test]
fn line_breaks_in_values_reach_the_record_as_the_event_holds_them() {
    let xml = "<Event>\r\n<System><EventRecordID>5</EventRecordID>\r\n\
        <Provider Name=\"a\r\n\tb\"/></System>\
        <EventData><Data Name=\"List\">x\r\n\ty</Data>\
        <Data Name=\"Raw\"><![CDATA[c\td]]></Data><!-- a\r\nnote --></EventData></Event>";
    let rendered = render(xml).expect("renders");
    assert_eq!(rendered.record["Provider"], "a\r\n\tb");
    assert_eq!(rendered.record["EventData"]["List"], "x\r\n\ty");
    assert_eq!(rendered.record["EventData"]["Raw"], "c\td");
}
