//! Reads one section of the merged configuration (the `config` crate's value tree) into
//! its raw struct, with serde doing the typing. Three things are added on the way, and
//! only here:
//!
//! - **Unknown keys**: every key a table does not know is reported with the closest
//!   known one, then skipped, so that one typo does not hide the other mistakes of its
//!   section. The known keys are the field list serde's derive hands to
//!   `deserialize_struct`, the very list `deny_unknown_fields` checks: no list of keys is
//!   kept by hand.
//! - **Environment values are text**: the environment layer is read without parsing
//!   (`try_parsing(false)`), and the field's type decides: a bool or number field parses
//!   the variable's text, a list field splits it at commas, a text field keeps it as
//!   written. So `CAS__TICKETS__REDIS__PASSWORD=007` stays `007`, and
//!   `CAS__SERVER__MAX_CONNECTIONS=64` is a number. Values from the files keep TOML's types
//!   strictly (`secure = "yes"` is a mistake, not `true`).
//! - **Errors name the key, never the value**: each error carries the path where it
//!   happened, and type errors say what kind of value was met (a value may be a secret).

use std::cell::RefCell;
use std::fmt;

use config::{Map, Value, ValueKind};
use serde::de::{self, DeserializeSeed, Expected, IntoDeserializer, Unexpected, Visitor};

use super::report::{hint, join};

/// The origin the `config` crate gives every value its environment layer reads.
const ENVIRONMENT: &str = "the environment";

/// Unknown keys met while reading, as (key path, message).
pub(super) type Unknown = RefCell<Vec<(String, String)>>;

/// A value of the tree at `path`, as a serde deserializer.
pub(super) struct Node<'u> {
    value: Value,
    path: String,
    unknown: &'u Unknown,
}

impl<'u> Node<'u> {
    pub(super) fn new(value: Value, path: &str, unknown: &'u Unknown) -> Self {
        Self {
            value,
            path: path.to_owned(),
            unknown,
        }
    }

    /// The text of a value an environment variable set.
    fn env_text(&self) -> Option<&str> {
        match &self.value.kind {
            ValueKind::String(text) if self.value.origin() == Some(ENVIRONMENT) => Some(text),
            _ => None,
        }
    }
}

/// The entries of `table` at `path`; with `known`, the unknown ones are reported and left
/// out.
fn entries<'u>(
    table: Map<String, Value>,
    known: Option<&[&str]>,
    path: String,
    unknown: &'u Unknown,
) -> Entries<'u> {
    let mut entries: Vec<(String, Value)> = table.into_iter().collect();
    // The tree's tables are hash maps: sorted, a report lists problems in the same order
    // on every run.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(known) = known {
        entries.retain(|(name, _)| {
            let ok = known.contains(&name.as_str());
            if !ok {
                let message = format!("unknown key{}", hint(&path, name, known.iter().copied()));
                unknown.borrow_mut().push((join(&path, name), message));
            }
            ok
        });
    }
    Entries {
        entries: entries.into_iter(),
        next: None,
        path,
        unknown,
    }
}

fn items(items: Vec<Value>, path: String, unknown: &Unknown) -> Items<'_> {
    Items {
        items: items.into_iter().enumerate(),
        path,
        unknown,
    }
}

macro_rules! parse_env_number {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let Some(text) = self.env_text() else {
                return self.deserialize_any(visitor);
            };
            let text = text.trim();
            let parsed = if let Ok(n) = text.parse::<u64>() {
                visitor.visit_u64(n)
            } else if let Ok(n) = text.parse::<i64>() {
                visitor.visit_i64(n)
            } else if let Ok(n) = text.parse::<f64>() {
                visitor.visit_f64(n)
            } else {
                Err(de::Error::invalid_type(Unexpected::Str(text), &visitor))
            };
            parsed.map_err(|e: DeError| e.at(&self.path))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Node<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let Node {
            value,
            path,
            unknown,
        } = self;
        let visited = match value.kind {
            ValueKind::Nil => visitor.visit_unit(),
            ValueKind::Boolean(b) => visitor.visit_bool(b),
            ValueKind::I64(n) => visitor.visit_i64(n),
            ValueKind::I128(n) => visitor.visit_i128(n),
            ValueKind::U64(n) => visitor.visit_u64(n),
            ValueKind::U128(n) => visitor.visit_u128(n),
            ValueKind::Float(n) => visitor.visit_f64(n),
            ValueKind::String(text) => visitor.visit_string(text),
            ValueKind::Array(list) => visitor.visit_seq(items(list, path.clone(), unknown)),
            ValueKind::Table(table) => {
                visitor.visit_map(entries(table, None, path.clone(), unknown))
            }
        };
        visited.map_err(|e| e.at(&path))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let Some(text) = self.env_text() else {
            return self.deserialize_any(visitor);
        };
        match text.trim().to_lowercase().parse::<bool>() {
            Ok(b) => visitor.visit_bool(b),
            Err(_) => Err(de::Error::invalid_type(Unexpected::Str(text), &visitor)),
        }
        .map_err(|e: DeError| e.at(&self.path))
    }

    parse_env_number! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_f32 deserialize_f64
    }

    /// A key left out of an array of tables (`[[users]]`) is an empty list; a variable's
    /// text is split at commas (`CAS__SERVER__TRUSTED_PROXIES=10.0.0.1,10.0.0.2`).
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let list = match (self.env_text(), &self.value.kind) {
            (Some(""), _) | (None, ValueKind::Nil) => Vec::new(),
            (Some(text), _) => text
                .split(',')
                .map(|item| Value::new(Some(&ENVIRONMENT.to_owned()), item))
                .collect(),
            (None, _) => return self.deserialize_any(visitor),
        };
        visitor
            .visit_seq(items(list, self.path.clone(), self.unknown))
            .map_err(|e: DeError| e.at(&self.path))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value.kind {
            ValueKind::Nil => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    /// A table left out is empty (its keys' defaults apply); its unknown keys are
    /// reported and skipped.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let Node {
            value,
            path,
            unknown,
        } = self;
        let table = match value.kind {
            ValueKind::Table(table) => table,
            ValueKind::Nil => Map::new(),
            kind => {
                return Node::new(Value::new(None, kind), &path, unknown).deserialize_any(visitor);
            }
        };
        visitor
            .visit_map(entries(table, Some(fields), path.clone(), unknown))
            .map_err(|e| e.at(&path))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value.kind {
            ValueKind::Nil => visitor.visit_map(entries(Map::new(), None, self.path, self.unknown)),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char str string bytes byte_buf unit unit_struct tuple tuple_struct
        enum identifier
    }
}

impl<'de, 'u> IntoDeserializer<'de, DeError> for Node<'u> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

/// The entries of a table, in key order.
struct Entries<'u> {
    entries: std::vec::IntoIter<(String, Value)>,
    next: Option<(String, Value)>,
    path: String,
    unknown: &'u Unknown,
}

impl<'de> de::MapAccess<'de> for Entries<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((name, value)) = self.entries.next() else {
            return Ok(None);
        };
        let key = seed.deserialize(name.clone().into_deserializer())?;
        self.next = Some((name, value));
        Ok(Some(key))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (name, value) = self
            .next
            .take()
            .ok_or_else(|| <DeError as de::Error>::custom("a value without its key"))?;
        seed.deserialize(Node::new(value, &join(&self.path, &name), self.unknown))
    }
}

/// The entries of an array, each at `path[i]`.
struct Items<'u> {
    items: std::iter::Enumerate<std::vec::IntoIter<Value>>,
    path: String,
    unknown: &'u Unknown,
}

impl<'de> de::SeqAccess<'de> for Items<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            None => Ok(None),
            Some((i, value)) => {
                let path = format!("{}[{i}]", self.path);
                seed.deserialize(Node::new(value, &path, self.unknown))
                    .map(Some)
            }
        }
    }
}

/// A value that does not fit its field, at the key where it was met.
#[derive(Debug)]
pub(super) struct DeError {
    key: Option<String>,
    message: String,
}

impl DeError {
    /// Places the error at `path` unless a deeper value already placed it.
    fn at(mut self, path: &str) -> Self {
        if self.key.is_none() {
            self.key = Some(path.to_owned());
        }
        self
    }

    /// The key path of the value that did not fit.
    pub(super) fn key(&self) -> &str {
        self.key.as_deref().unwrap_or_default()
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Self {
            key: None,
            message: message.to_string(),
        }
    }

    // serde's own wording quotes the value met (`invalid type: integer `123456``): the
    // value of a password, say. Its kind and the expected type say enough.
    fn invalid_type(unexpected: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Self::custom(format!(
            "invalid type: {}, expected {expected}",
            kind(&unexpected)
        ))
    }

    fn invalid_value(unexpected: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Self::custom(format!(
            "invalid value: {}, expected {expected}",
            kind(&unexpected)
        ))
    }
}

/// What kind of value was met, without the value.
fn kind(unexpected: &Unexpected<'_>) -> &'static str {
    match unexpected {
        Unexpected::Bool(_) => "boolean",
        Unexpected::Unsigned(_) | Unexpected::Signed(_) => "integer",
        Unexpected::Float(_) => "floating point number",
        Unexpected::Char(_) => "character",
        Unexpected::Str(_) => "string",
        Unexpected::Bytes(_) => "bytes",
        Unexpected::Seq => "array",
        Unexpected::Map => "table",
        Unexpected::Unit => "empty value",
        _ => "value of another kind",
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        secret: String,
        count: u32,
        flag: bool,
        list: Vec<String>,
        nested: Nested,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Nested {
        #[serde(default)]
        name: Option<String>,
    }

    fn env(text: &str) -> Value {
        Value::new(Some(&ENVIRONMENT.to_owned()), text)
    }

    fn table(entries: Vec<(&str, Value)>) -> Value {
        let map: Map<String, Value> = entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        Value::new(None, ValueKind::Table(map))
    }

    #[test]
    fn environment_text_takes_the_type_of_its_field() {
        let unknown = Unknown::default();
        let value = table(vec![
            ("secret", env("007")),
            ("count", env("64")),
            ("flag", env("FALSE")),
            ("list", env("a,b")),
            ("nested", table(vec![])),
        ]);
        let raw = Raw::deserialize(Node::new(value, "s", &unknown)).unwrap();
        assert_eq!(raw.secret, "007");
        assert_eq!(raw.count, 64);
        assert!(!raw.flag);
        assert_eq!(raw.list, ["a", "b"]);
        assert!(raw.nested.name.is_none());
    }

    #[test]
    fn file_values_keep_their_types_and_errors_never_quote_them() {
        let unknown = Unknown::default();
        let value = table(vec![
            ("secret", Value::new(None, 987_654_321_i64)),
            ("count", Value::new(None, 1_i64)),
            ("flag", Value::new(None, true)),
            ("list", Value::new(None, ValueKind::Array(vec![]))),
            ("nested", table(vec![])),
        ]);
        let e = Raw::deserialize(Node::new(value, "s", &unknown)).unwrap_err();
        assert_eq!(e.key(), "s.secret");
        assert_eq!(e.to_string(), "invalid type: integer, expected a string");
    }

    #[test]
    fn every_unknown_key_is_reported_with_a_hint_and_skipped() {
        let unknown = Unknown::default();
        let value = table(vec![
            ("secret", env("x")),
            ("cuont", env("1")),
            ("count", env("1")),
            ("flag", env("true")),
            ("list", env("")),
            ("nested", table(vec![("nmae", env("x"))])),
        ]);
        let raw = Raw::deserialize(Node::new(value, "s", &unknown)).unwrap();
        assert!(raw.list.is_empty());
        assert_eq!(
            unknown.into_inner(),
            [
                (
                    "s.cuont".to_owned(),
                    "unknown key; did you mean `s.count`?".to_owned()
                ),
                (
                    "s.nested.nmae".to_owned(),
                    "unknown key; did you mean `s.nested.name`?".to_owned()
                ),
            ]
        );
    }
}
