//! InfluxQL: quoting (injection-safe literals, identifiers and regexes) and the
//! answers of `/query`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// A double-quoted identifier.
pub(crate) fn ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if matches!(c, '\\' | '"') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A single-quoted string literal: InfluxQL's scanner knows the escapes `\\`, `\'`,
/// `\"` and `\n`, so `\` and `'` are escaped and newlines spelled `\n` (keys hold no
/// other control character).
pub(crate) fn string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\\' | '\'' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            _ => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A regex literal matching keys that start with `prefix` exactly: every regex
/// metacharacter escaped (as Go's `regexp.QuoteMeta`); `\` and `/` are spelled as hex
/// escapes (`\x5c`, `\x2f`), because InfluxQL's regex scanner reads `\/` as an
/// escaped delimiter and would otherwise let a trailing backslash end the literal late.
pub(crate) fn prefix_regex(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 4);
    out.push_str("/^");
    for c in prefix.chars() {
        match c {
            '\\' => out.push_str("\\x5c"),
            '/' => out.push_str("\\x2f"),
            '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out.push('/');
    out
}

/// The answer of `/query`: one result per statement.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Response {
    #[serde(default)]
    pub results: Vec<StatementResult>,
    /// A request-level error (a bad query string).
    #[serde(default)]
    pub error: Option<String>,
}

/// The answer to one statement.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct StatementResult {
    #[serde(default)]
    pub series: Vec<Series>,
    /// A statement-level error (`database not found: …`).
    #[serde(default)]
    pub error: Option<String>,
}

/// One series: its tags (with `GROUP BY`), columns and rows.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Series {
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub columns: Vec<String>,
    #[serde(default)]
    pub values: Vec<Vec<Value>>,
}

/// One row of a series, read by column name (a tag of the series counts as a column).
#[derive(Debug)]
pub(crate) struct Row<'a> {
    series: &'a Series,
    values: &'a [Value],
}

impl<'a> Row<'a> {
    fn column(&self, name: &str) -> Option<&'a Value> {
        let i = self.series.columns.iter().position(|c| c == name)?;
        self.values.get(i).filter(|v| !v.is_null())
    }

    /// Those of `names` that are columns of the series but empty in this row.
    pub fn missing<'n>(&self, names: &[&'n str]) -> Vec<&'n str> {
        names
            .iter()
            .copied()
            .filter(|n| self.series.columns.iter().any(|c| c == n) && self.column(n).is_none())
            .collect()
    }

    /// A string column, or the series' tag of that name.
    pub fn str(&self, name: &str) -> Option<&'a str> {
        match self.column(name) {
            Some(v) => v.as_str(),
            None => self.series.tags.get(name).map(String::as_str),
        }
    }

    /// An integer column (times come as integers with `epoch=ns`).
    pub fn i64(&self, name: &str) -> Option<i64> {
        self.column(name).and_then(Value::as_i64)
    }

    /// A boolean column.
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.column(name).and_then(Value::as_bool)
    }
}

impl Series {
    /// Its rows.
    pub fn rows(&self) -> impl Iterator<Item = Row<'_>> {
        self.values.iter().map(move |values| Row {
            series: self,
            values,
        })
    }
}

impl Response {
    /// The first error of the request or of a statement.
    pub fn error(&self) -> Option<&str> {
        self.error
            .as_deref()
            .or_else(|| self.results.iter().find_map(|r| r.error.as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_cannot_be_escaped_from() {
        assert_eq!(ident("a\"b"), "\"a\\\"b\"");
        assert_eq!(string("it's"), "'it\\'s'");
        assert_eq!(string("a\\' OR 1=1"), "'a\\\\\\' OR 1=1'");
        assert_eq!(string("x\ny"), "'x\\ny'");
        assert_eq!(prefix_regex("a.b/c"), "/^a\\.b\\x2fc/");
        assert_eq!(
            prefix_regex("(x)|[y]*+?{1}^$\\"),
            "/^\\(x\\)\\|\\[y\\]\\*\\+\\?\\{1\\}\\^\\$\\x5c/"
        );
        // A prefix that tries to close the regex and add a clause stays inside it.
        assert_eq!(prefix_regex("/ OR 1=1"), "/^\\x2f OR 1=1/");
        assert_eq!(prefix_regex("a\\/"), "/^a\\x5c\\x2f/");
    }

    #[test]
    fn answers_are_parsed_by_column_and_tag() {
        let body = r#"{"results":[{"statement_id":0,"series":[{"name":"m","tags":{"key":"a"},
            "columns":["time","version","tombstone","size"],
            "values":[[1000001,"v1",false,3],[1000000,"v0",null,null]]}]},
            {"statement_id":1,"error":"database not found: x"}]}"#;
        let r: Response = serde_json::from_str(body).unwrap();
        assert_eq!(r.error(), Some("database not found: x"));
        let rows: Vec<Row<'_>> = r.results[0].series[0].rows().collect();
        assert_eq!(rows[0].i64("time"), Some(1_000_001));
        assert_eq!(rows[0].str("key"), Some("a"));
        assert_eq!(rows[0].str("version"), Some("v1"));
        assert_eq!(rows[0].bool("tombstone"), Some(false));
        assert_eq!(rows[1].bool("tombstone"), None);
        assert_eq!(rows[1].i64("size"), None);
        let empty: Response = serde_json::from_str(r#"{"results":[{"statement_id":0}]}"#).unwrap();
        assert!(empty.error().is_none() && empty.results[0].series.is_empty());
    }
}
