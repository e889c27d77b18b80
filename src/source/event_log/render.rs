//! One Windows event, as the Event Log renders it in XML (the API's `EvtRender`, or an `.evtx`
//! parser, which give the same shape), made into the JSON object record kinship sends. This is
//! plain text work, the same on every platform.
//!
//! The record holds the `System` fields at its top level, in the order the XML gives them
//! (numbers as numbers, `Keywords` as its hex text), then `EventData` and `UserData` as
//! objects:
//!
//! ```json
//! {"Provider":"Microsoft-Windows-Security-Auditing","ProviderGuid":"{5484…}","EventID":4624,
//!  "Version":0,"Level":0,"Task":12544,"Opcode":0,"Keywords":"0x8020000000000000",
//!  "TimeCreated":"2017-12-13T14:48:10.2932383Z","EventRecordID":2,"ProcessID":452,
//!  "ThreadID":456,"Channel":"Security","Computer":"host-25",
//!  "EventData":{"TargetUserName":"SYSTEM","LogonType":"0","IpAddress":"-"}}
//! ```

use roxmltree::{Document, Node};
use serde_json::{Map, Number, Value};

/// An event made into a record.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub record_id: u64,
    pub record: Map<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the event's XML cannot be read: {0}")]
    Xml(#[from] roxmltree::Error),
    #[error("the XML is not an event: its root is <{0}>, not <Event>")]
    NotAnEvent(String),
    #[error("the event has no <System> element")]
    NoSystem,
    #[error("the event has no EventRecordID")]
    NoRecordId,
}

/// The `System` fields written as numbers.
const NUMBERS: [&str; 7] = [
    "EventID",
    "Version",
    "Level",
    "Task",
    "Opcode",
    "EventRecordID",
    "Qualifiers",
];

/// `xml`, one `<Event>`, as a record.
pub fn render(xml: &str) -> Result<Rendered, RenderError> {
    let kept = keep_line_breaks(xml);
    let document = Document::parse(&kept)?;
    let event = document.root_element();
    if event.tag_name().name() != "Event" {
        return Err(RenderError::NotAnEvent(event.tag_name().name().to_owned()));
    }
    let system = child(event, "System").ok_or(RenderError::NoSystem)?;
    let mut record = Map::new();
    for field in system.children().filter(Node::is_element) {
        system_field(field, &mut record);
    }
    let record_id = record
        .get("EventRecordID")
        .and_then(Value::as_u64)
        .ok_or(RenderError::NoRecordId)?;
    if let Some(data) = child(event, "EventData") {
        record.insert("EventData".into(), event_data(data));
    }
    if let Some(data) = child(event, "UserData") {
        record.insert("UserData".into(), element_value(data));
    }
    Ok(Rendered { record_id, record })
}

/// `xml` with the characters an XML parser would change written as character references, so
/// that values reach the record as the event holds them: a parser turns `\r\n` into `\n` in
/// text, and line breaks and tabs into spaces in attribute values. (Events hold `\r\n` in
/// their data, such as a privilege list.) Left alone in CDATA sections and comments, where a
/// reference would be read as text.
fn keep_line_breaks(xml: &str) -> std::borrow::Cow<'_, str> {
    if !xml.contains(['\r', '\n', '\t']) {
        return std::borrow::Cow::Borrowed(xml);
    }
    #[derive(Clone, Copy, PartialEq)]
    enum At {
        Text,
        Tag,
        Quoted(char),
        Raw(&'static str),
    }
    let mut out = String::with_capacity(xml.len() + 64);
    let mut at = At::Text;
    let mut rest = xml;
    while let Some(c) = rest.chars().next() {
        if let At::Raw(end) = at {
            let upto = rest.find(end).map_or(rest.len(), |found| found + end.len());
            out.push_str(&rest[..upto]);
            rest = &rest[upto..];
            at = At::Text;
            continue;
        }
        if at == At::Text && c == '<' {
            if let Some(end) = [("<![CDATA[", "]]>"), ("<!--", "-->"), ("<?", "?>")]
                .iter()
                .find(|(start, _)| rest.starts_with(start))
                .map(|(_, end)| *end)
            {
                at = At::Raw(end);
                continue;
            }
        }
        at = match (at, c) {
            (At::Text, '<') => At::Tag,
            (At::Tag, '>') => At::Text,
            (At::Tag, '"' | '\'') => At::Quoted(c),
            (At::Quoted(quote), _) if c == quote => At::Tag,
            (other, _) => other,
        };
        match (at, c) {
            (At::Text, '\r') => out.push_str("&#13;"),
            (At::Quoted(_), '\r') => out.push_str("&#13;"),
            (At::Quoted(_), '\n') => out.push_str("&#10;"),
            (At::Quoted(_), '\t') => out.push_str("&#9;"),
            _ => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    std::borrow::Cow::Owned(out)
}

/// Adds one child of `<System>` to `record`.
fn system_field(field: Node<'_, '_>, record: &mut Map<String, Value>) {
    let name = field.tag_name().name();
    match name {
        "Provider" => {
            copy_attribute(field, "Name", "Provider", record);
            copy_attribute(field, "Guid", "ProviderGuid", record);
            copy_attribute(field, "EventSourceName", "EventSourceName", record);
        }
        "EventID" => {
            record.insert(name.into(), scalar(name, text(field)));
            copy_attribute(field, "Qualifiers", "Qualifiers", record);
        }
        "TimeCreated" => copy_attribute(field, "SystemTime", "TimeCreated", record),
        "Correlation" => {
            copy_attribute(field, "ActivityID", "ActivityID", record);
            copy_attribute(field, "RelatedActivityID", "RelatedActivityID", record);
        }
        "Execution" => {
            for attribute in field.attributes() {
                record.insert(attribute.name().into(), number_or_text(attribute.value()));
            }
        }
        "Security" => copy_attribute(field, "UserID", "UserID", record),
        _ if field.has_children() && field.children().any(|node| node.is_element()) => {
            record.insert(name.into(), element_value(field));
        }
        _ => {
            record.insert(name.into(), scalar(name, text(field)));
        }
    }
}

/// `<EventData>`: each `<Data Name="X">` as `"X"`; unnamed `<Data>` in a `"Data"` list, in
/// order; any other element (`<Binary>`, …) by its name.
fn event_data(data: Node<'_, '_>) -> Value {
    let mut members = Map::new();
    let mut unnamed = Vec::new();
    for item in data.children().filter(Node::is_element) {
        let tag = item.tag_name().name();
        match (tag, item.attribute("Name")) {
            ("Data", Some(name)) => {
                members.insert(name.to_owned(), element_value(item));
            }
            ("Data", None) => unnamed.push(element_value(item)),
            (other, _) => insert_repeated(&mut members, other, element_value(item)),
        }
    }
    if !unnamed.is_empty() {
        members.insert("Data".into(), Value::Array(unnamed));
    }
    Value::Object(members)
}

/// An element as JSON: its text when it has no child elements, else an object of its children
/// (a name repeated becomes a list).
fn element_value(element: Node<'_, '_>) -> Value {
    if !element.children().any(|node| node.is_element()) {
        return Value::String(text(element));
    }
    let mut members = Map::new();
    for item in element.children().filter(Node::is_element) {
        insert_repeated(&mut members, item.tag_name().name(), element_value(item));
    }
    Value::Object(members)
}

/// Adds `value` as `name`; a name seen before becomes a list of every value, in order.
fn insert_repeated(members: &mut Map<String, Value>, name: &str, value: Value) {
    match members.get_mut(name) {
        None => {
            members.insert(name.to_owned(), value);
        }
        Some(Value::Array(values)) => values.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
    }
}

fn child<'a, 'input>(parent: Node<'a, 'input>, name: &str) -> Option<Node<'a, 'input>> {
    parent
        .children()
        .find(|node| node.is_element() && node.tag_name().name() == name)
}

/// The element's text (all of it, entities decoded), or "" when it has none.
fn text(element: Node<'_, '_>) -> String {
    element
        .children()
        .filter(Node::is_text)
        .filter_map(|node| node.text())
        .collect()
}

fn copy_attribute(
    field: Node<'_, '_>,
    attribute: &str,
    key: &str,
    record: &mut Map<String, Value>,
) {
    if let Some(value) = field.attribute(attribute) {
        let value = if key == "Qualifiers" {
            number_or_text(value)
        } else {
            Value::String(value.to_owned())
        };
        record.insert(key.to_owned(), value);
    }
}

/// A `System` field's text: a number for the numeric fields (when it reads as one).
fn scalar(name: &str, text: String) -> Value {
    if NUMBERS.contains(&name) {
        number_or_text(&text)
    } else {
        Value::String(text)
    }
}

fn number_or_text(text: &str) -> Value {
    match text.trim().parse::<u64>() {
        Ok(number) => Value::Number(Number::from(number)),
        Err(_) => Value::String(text.to_owned()),
    }
}

#[cfg(test)]
mod tests;
