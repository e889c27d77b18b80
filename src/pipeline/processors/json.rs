//! A JSON object written key by key, in order: what the converters produce.

use bytes::Bytes;

/// A field's value: text, or `null` for a missing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Text(&'a str),
    Null,
}

/// `{"key":value,…}` built in the order fields are pushed.
#[derive(Debug, Default)]
pub struct Object {
    text: String,
}

impl Object {
    pub fn push(&mut self, key: &str, value: Value<'_>) {
        self.text.push(if self.text.is_empty() { '{' } else { ',' });
        push_string(&mut self.text, key);
        self.text.push(':');
        match value {
            Value::Text(text) => push_string(&mut self.text, text),
            Value::Null => self.text.push_str("null"),
        }
    }

    /// The members alone, without braces (to add to another object).
    pub fn into_members(self) -> String {
        self.text.get(1..).unwrap_or_default().to_owned()
    }

    /// The object as text.
    pub fn into_text(mut self) -> String {
        if self.text.is_empty() {
            self.text.push('{');
        }
        self.text.push('}');
        self.text
    }

    /// The object followed by `line_end`, as a record.
    pub fn into_record(mut self, line_end: &[u8]) -> Bytes {
        if self.text.is_empty() {
            self.text.push('{');
        }
        self.text.push('}');
        let mut bytes = self.text.into_bytes();
        bytes.extend_from_slice(line_end);
        Bytes::from(bytes)
    }
}

fn push_string(out: &mut String, text: &str) {
    out.push_str(&string(text));
}

/// `text` as a JSON string, quotes included.
pub fn string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// `body`, a JSON object (surrounding spaces allowed), with `members` (`"k":v,…`) added, then
/// `line_end`; `None` if `body` is not a JSON object. A member whose key the object already has
/// replaces that member's value where it stands (as the Kinesis Agent's `putAll` into an ordered
/// map does: the added value wins, the key keeps its place); the others become the last keys.
/// The object's own bytes are otherwise untouched.
pub fn add_members(body: &[u8], members: &str, line_end: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?.trim();
    let existing: RawMembers<'_> = serde_json::from_str(text).ok()?;
    let added_text = format!("{{{members}}}");
    let added: RawMembers<'_> = serde_json::from_str(&added_text).ok()?;
    // Later added members win over earlier ones with the same key.
    let mut wanted: Vec<(String, String)> = Vec::with_capacity(added.0.len());
    for (key, value) in added.0 {
        match wanted.iter_mut().find(|(seen, _)| *seen == key) {
            Some(slot) => slot.1 = value.get().to_owned(),
            None => wanted.push((key, value.get().to_owned())),
        }
    }
    // The byte ranges of the values to replace, in order (every copy of a repeated key).
    let mut replaced: Vec<(usize, usize, &str)> = Vec::new();
    let mut appended: Vec<&(String, String)> = Vec::new();
    for member in &wanted {
        let mut found = false;
        for (key, value) in &existing.0 {
            if *key == member.0 {
                let start = value.get().as_ptr() as usize - text.as_ptr() as usize;
                replaced.push((start, start + value.get().len(), &member.1));
                found = true;
            }
        }
        if !found {
            appended.push(member);
        }
    }
    replaced.sort_unstable_by_key(|(start, _, _)| *start);
    let mut object = String::with_capacity(text.len() + members.len());
    let mut at = 0;
    for (start, end, value) in replaced {
        object.push_str(&text[at..start]);
        object.push_str(value);
        at = end;
    }
    object.push_str(&text[at..]);
    let inner = object[1..object.len() - 1].trim();
    let mut out = Vec::with_capacity(inner.len() + members.len() + line_end.len() + 3);
    out.push(b'{');
    out.extend_from_slice(inner.as_bytes());
    for (index, (key, value)) in appended.into_iter().enumerate() {
        if index > 0 || !existing.0.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(string(key).as_bytes());
        out.push(b':');
        out.extend_from_slice(value.as_bytes());
    }
    out.push(b'}');
    out.extend_from_slice(line_end);
    Some(out)
}

/// A JSON object's members in the order written, each value as its own text (borrowed from
/// the input, so its place in the input is known).
struct RawMembers<'a>(Vec<(String, &'a serde_json::value::RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for RawMembers<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = RawMembers<'a>;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(member) =
                    map.next_entry::<String, &'a serde_json::value::RawValue>()?
                {
                    members.push(member);
                }
                Ok(RawMembers(members))
            }
        }
        deserializer.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(body: &str, members: &str) -> Option<String> {
        add_members(body.as_bytes(), members, b"\n")
            .map(|out| String::from_utf8(out).expect("utf-8"))
    }

    #[test]
    fn an_added_key_the_object_has_replaces_its_value_in_place() {
        assert_eq!(
            add(r#"{"region":"mine","a":1}"#, r#""region":"added","b":2"#).as_deref(),
            Some("{\"region\":\"added\",\"a\":1,\"b\":2}\n")
        );
        // Spacing and the other members' bytes are kept; values of any kind are replaced.
        assert_eq!(
            add(
                r#" { "a" : [1, 2] , "n": {"x":1} } "#,
                r#""n":null,"a":"z""#
            )
            .as_deref(),
            Some("{\"a\" : \"z\" , \"n\": null}\n")
        );
    }

    #[test]
    fn the_later_of_two_added_members_wins() {
        assert_eq!(
            add(r#"{"a":1}"#, r#""host":"x","b":2,"host":"y""#).as_deref(),
            Some("{\"a\":1,\"host\":\"y\",\"b\":2}\n")
        );
        assert_eq!(add("{}", r#""a":1"#).as_deref(), Some("{\"a\":1}\n"));
        assert_eq!(add(r#"{"a":1}"#, "").as_deref(), Some("{\"a\":1}\n"));
    }

    #[test]
    fn only_objects_take_members() {
        assert_eq!(add("[1]", r#""a":1"#), None);
        assert_eq!(add("\"text\"", r#""a":1"#), None);
        assert_eq!(add("{\"a\":", r#""a":1"#), None);
        assert_eq!(add("plain", r#""a":1"#), None);
    }
}
