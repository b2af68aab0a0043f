//! Lenient reading of agent JSON output: a field of an unexpected type reads as absent, and a
//! line that is not a JSON object is skipped, so a CLI that changes its output shape degrades
//! the report instead of breaking the run.

use serde_json::Value;

/// `line` parsed as a JSON object, or `None` for anything else (a blank line, a plain-text
/// warning, a line cut short by the line cap).
pub(crate) fn parse_object(line: &str) -> Option<Value> {
    let line = line.trim();
    if !line.starts_with('{') {
        return None;
    }
    serde_json::from_str::<Value>(line).ok().filter(Value::is_object)
}

pub(crate) fn str_field<'v>(value: &'v Value, key: &str) -> Option<&'v str> {
    value.get(key).and_then(Value::as_str)
}

/// A non-negative integer field; a float with no fractional part counts too.
pub(crate) fn u64_field(value: &Value, key: &str) -> Option<u64> {
    let field = value.get(key)?;
    field
        .as_u64()
        .or_else(|| field.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64).map(|f| f as u64))
}

pub(crate) fn u32_field(value: &Value, key: &str) -> Option<u32> {
    u64_field(value, key).and_then(|n| u32::try_from(n).ok())
}

/// The last JSON object in `text` that starts at the beginning of a line, for CLIs that print
/// one pretty-printed document, possibly after other output.
pub(crate) fn last_document(text: &str) -> Option<Value> {
    let mut starts: Vec<usize> = text.match_indices('\n').map(|(i, _)| i + 1).collect();
    starts.insert(0, 0);
    starts.into_iter().rev().filter(|&i| text[i..].starts_with('{')).find_map(|i| {
        let mut stream = serde_json::Deserializer::from_str(&text[i..]).into_iter::<Value>();
        stream.next()?.ok().filter(Value::is_object)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_objects_parse() {
        assert_eq!(parse_object(r#" {"type":"x"} "#), Some(json!({"type": "x"})));
        for line in ["", "[1]", "\"s\"", "{\"cut\": ", "WARNING: x", "{}}"] {
            assert_eq!(parse_object(line), None, "{line:?}");
        }
    }

    #[test]
    fn numbers_of_the_wrong_shape_read_as_absent() {
        let v = json!({"a": 3, "b": 3.0, "c": -1, "d": "3", "e": 1.5, "f": 5_000_000_000u64});
        assert_eq!(u64_field(&v, "a"), Some(3));
        assert_eq!(u64_field(&v, "b"), Some(3));
        assert_eq!(u64_field(&v, "c"), None);
        assert_eq!(u64_field(&v, "d"), None);
        assert_eq!(u64_field(&v, "e"), None);
        assert_eq!(u32_field(&v, "f"), None);
    }

    #[test]
    fn the_last_document_after_other_output_is_found() {
        let text = "Loaded cached credentials.\n{\n  \"response\": \"a {\\n}\",\n  \"n\": 1\n}\ntrailing words\n";
        assert_eq!(last_document(text), Some(json!({"response": "a {\n}", "n": 1})));
        assert_eq!(last_document("{\"a\":1}\n{\"b\":2}"), Some(json!({"b": 2})));
        assert_eq!(last_document("no json here\n{ broken"), None);
    }
}
