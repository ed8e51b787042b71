//! A response as a JSON tree, read from its `Debug` output: every field of every
//! `kafka-protocol` message derives `Debug`, so one small parser covers every API and every
//! field the crate knows, with nothing per API to forget.
//!
//! Structs become objects (the type name dropped), `Some(x)` becomes `x`, `None` `null`,
//! newtypes their content, byte strings `"0x…"` hex, numbers numbers, and bare words (UUIDs,
//! enum variants) strings. Empty `unknown_tagged_fields` are dropped.

use std::fmt::Debug;

use serde_json::{Map, Number, Value};

pub fn of(value: &impl Debug) -> Value {
    let text = format!("{value:?}");
    let mut parser = Parser {
        text: text.as_bytes(),
        at: 0,
    };
    let tree = parser.value();
    parser.skip_space();
    assert_eq!(
        parser.at,
        text.len(),
        "trailing Debug output at {}: {text}",
        parser.at
    );
    tree
}

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(|byte| byte.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        self.skip_space();
        if self.peek() == Some(byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, byte: u8) {
        assert!(
            self.eat(byte),
            "Debug output: expected {:?} at {} in {}",
            byte as char,
            self.at,
            String::from_utf8_lossy(self.text)
        );
    }

    fn value(&mut self) -> Value {
        self.skip_space();
        match self.peek() {
            Some(b'"') => Value::String(self.string()),
            Some(b'b') if self.text.get(self.at + 1) == Some(&b'"') => {
                self.at += 1;
                let bytes = self.byte_string();
                Value::String(format!("0x{}", hex(&bytes)))
            }
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                while !self.eat(b']') {
                    items.push(self.value());
                    self.eat(b',');
                }
                Value::Array(items)
            }
            Some(b'{') => {
                self.at += 1;
                let mut map = Map::new();
                while !self.eat(b'}') {
                    let key = match self.value() {
                        Value::String(key) => key,
                        other => other.to_string(),
                    };
                    self.expect(b':');
                    map.insert(key, self.value());
                    self.eat(b',');
                }
                Value::Object(map)
            }
            _ => self.word_or_struct(),
        }
    }

    fn word(&mut self) -> String {
        self.skip_space();
        let start = self.at;
        while let Some(byte) = self.peek() {
            if byte.is_ascii_whitespace() || b",:{}[]()\"".contains(&byte) {
                break;
            }
            self.at += 1;
        }
        assert!(
            self.at > start,
            "Debug output: unexpected {:?} at {} in {}",
            self.peek().map(char::from),
            self.at,
            String::from_utf8_lossy(self.text)
        );
        String::from_utf8_lossy(&self.text[start..self.at]).into_owned()
    }

    fn word_or_struct(&mut self) -> Value {
        let word = self.word();
        self.skip_space();
        match self.peek() {
            Some(b'{') => {
                self.at += 1;
                let mut map = Map::new();
                while !self.eat(b'}') {
                    let field = self.word();
                    self.expect(b':');
                    let value = self.value();
                    let empty_tags = field == "unknown_tagged_fields"
                        && value.as_object().is_some_and(Map::is_empty);
                    if !empty_tags {
                        map.insert(field, value);
                    }
                    self.eat(b',');
                }
                Value::Object(map)
            }
            Some(b'(') => {
                self.at += 1;
                let mut items = Vec::new();
                while !self.eat(b')') {
                    items.push(self.value());
                    self.eat(b',');
                }
                if items.len() == 1 {
                    items.pop().expect("one item")
                } else {
                    Value::Array(items)
                }
            }
            _ => atom(word),
        }
    }

    fn string(&mut self) -> String {
        self.expect(b'"');
        let mut out = Vec::new();
        loop {
            let byte = self.peek().expect("unterminated string in Debug output");
            self.at += 1;
            match byte {
                b'"' => break,
                b'\\' => {
                    let escaped = self.peek().expect("escape");
                    self.at += 1;
                    match escaped {
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'0' => out.push(0),
                        b'u' => {
                            self.expect(b'{');
                            let start = self.at;
                            while self.peek() != Some(b'}') {
                                self.at += 1;
                            }
                            let code = std::str::from_utf8(&self.text[start..self.at])
                                .ok()
                                .and_then(|digits| u32::from_str_radix(digits, 16).ok())
                                .and_then(char::from_u32)
                                .unwrap_or('\u{fffd}');
                            self.at += 1;
                            let mut buffer = [0u8; 4];
                            out.extend_from_slice(code.encode_utf8(&mut buffer).as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                other => out.push(other),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn byte_string(&mut self) -> Vec<u8> {
        self.expect(b'"');
        let mut out = Vec::new();
        loop {
            let byte = self
                .peek()
                .expect("unterminated byte string in Debug output");
            self.at += 1;
            match byte {
                b'"' => break,
                b'\\' => {
                    let escaped = self.peek().expect("escape");
                    self.at += 1;
                    match escaped {
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'0' => out.push(0),
                        b'x' => {
                            let digits = std::str::from_utf8(&self.text[self.at..self.at + 2])
                                .expect("hex digits");
                            out.push(u8::from_str_radix(digits, 16).expect("hex escape"));
                            self.at += 2;
                        }
                        other => out.push(other),
                    }
                }
                other => out.push(other),
            }
        }
        out
    }
}

fn atom(word: String) -> Value {
    match word.as_str() {
        "None" => Value::Null,
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => {
            if let Ok(integer) = word.parse::<i64>() {
                Value::Number(integer.into())
            } else if let Some(number) = word.parse::<f64>().ok().and_then(Number::from_f64) {
                Value::Number(number)
            } else {
                Value::String(word)
            }
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let digits = text.strip_prefix("0x")?;
    (0..digits.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(digits.get(at..at + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    #[allow(dead_code, reason = "read through Debug")]
    struct Inner {
        name: String,
        bytes: bytes::Bytes,
        id: Option<i64>,
        none: Option<i64>,
    }

    #[derive(Debug)]
    #[allow(dead_code, reason = "read through Debug")]
    struct Outer {
        items: Vec<Inner>,
        map: std::collections::BTreeMap<i32, bool>,
        ratio: f64,
        unknown_tagged_fields: std::collections::BTreeMap<i32, i32>,
    }

    #[test]
    fn reads_nested_debug_output() {
        let value = Outer {
            items: vec![Inner {
                name: "a \"quoted\" {name}: [x]\n".to_owned(),
                bytes: bytes::Bytes::from_static(b"\x00\x01\"ab\\\n\xff"),
                id: Some(-3),
                none: None,
            }],
            map: [(1, true)].into_iter().collect(),
            ratio: 0.5,
            unknown_tagged_fields: Default::default(),
        };
        assert_eq!(
            of(&value),
            serde_json::json!({
                "items": [{
                    "name": "a \"quoted\" {name}: [x]\n",
                    "bytes": format!("0x{}", hex(b"\x00\x01\"ab\\\n\xff")),
                    "id": -3,
                    "none": null,
                }],
                "map": {"1": true},
                "ratio": 0.5,
            })
        );
    }
}
