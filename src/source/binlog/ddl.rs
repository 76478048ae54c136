//! A small SQL tokenizer for the statements of QUERY events: the first
//! keyword (BEGIN, COMMIT, DDL, statement DML) and the schema a DDL names.
//!
//! Invariants: pure and allocation-light; comments and quoted identifiers
//! (with doubled quotes) never confuse the keyword or the schema; when
//! unsure, `ddl_schema` answers None (the event's default database applies).

/// First SQL keyword, skipping whitespace and comments, upper-cased.
pub fn first_word(sql: &str) -> String {
    let mut s = sql.trim_start();
    loop {
        if let Some(r) = s.strip_prefix("/*") {
            // Executable comments (/*!40101 ...*/) still hide the keyword in practice only for SET; skip them.
            s = r.find("*/").map(|i| r[i + 2..].trim_start()).unwrap_or("");
        } else if s.starts_with("--") || s.starts_with('#') {
            s = s.find('\n').map(|i| s[i + 1..].trim_start()).unwrap_or("");
        } else {
            break;
        }
    }
    s.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .next()
        .unwrap_or("")
        .to_ascii_uppercase()
}

/// The schema a DDL statement names explicitly: `db` of `CREATE TABLE db.t`,
/// `ALTER TABLE db.t`, `DROP TABLE db.t`, `RENAME TABLE db.t TO ...`,
/// `TRUNCATE db.t`, `CREATE INDEX i ON db.t`, `CREATE/DROP DATABASE db`.
/// None when the object is unqualified (the default database applies).
pub fn ddl_schema(sql: &str) -> Option<String> {
    let mut toks = SqlTokens { s: sql };
    let mut prev_kw = String::new();
    for _ in 0..12 {
        let t = toks.next()?;
        let kw = t.to_ascii_uppercase();
        match kw.as_str() {
            "DATABASE" | "SCHEMA" if matches!(prev_kw.as_str(), "CREATE" | "DROP" | "ALTER") => {
                let mut name = toks.next()?;
                while matches!(name.to_ascii_uppercase().as_str(), "IF" | "NOT" | "EXISTS") {
                    name = toks.next()?;
                }
                return Some(unquote(&name));
            }
            "TABLE" | "ON" | "TRUNCATE" => {
                let mut name = toks.next()?;
                while matches!(
                    name.to_ascii_uppercase().as_str(),
                    "IF" | "NOT" | "EXISTS" | "TABLE"
                ) {
                    name = toks.next()?;
                }
                return (toks.peek_dot()).then(|| unquote(&name));
            }
            _ => prev_kw = kw,
        }
    }
    None
}

/// Minimal SQL word splitter: identifiers, `quoted` names, single punctuation.
struct SqlTokens<'a> {
    s: &'a str,
}

impl SqlTokens<'_> {
    fn skip_space(&mut self) {
        loop {
            self.s = self.s.trim_start();
            if let Some(r) = self.s.strip_prefix("/*") {
                self.s = r.find("*/").map(|i| &r[i + 2..]).unwrap_or("");
            } else if self.s.starts_with("--") || self.s.starts_with('#') {
                self.s = self.s.find('\n').map(|i| &self.s[i + 1..]).unwrap_or("");
            } else {
                return;
            }
        }
    }

    fn next(&mut self) -> Option<String> {
        self.skip_space();
        let c = self.s.chars().next()?;
        let end = if c == '`' || c == '"' {
            // Quoted identifier; a doubled quote is part of the name.
            let b = self.s.as_bytes();
            let mut i = 1;
            while i < b.len() {
                if b[i] == c as u8 {
                    if b.get(i + 1) == Some(&(c as u8)) {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            (i + 1).min(b.len())
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            self.s
                .find(|x: char| !(x.is_alphanumeric() || x == '_' || x == '$'))
                .unwrap_or(self.s.len())
        } else {
            c.len_utf8()
        };
        let (t, rest) = self.s.split_at(end);
        self.s = rest;
        Some(t.to_string())
    }

    /// True when the next character is a `.` (the previous token was a qualifier).
    fn peek_dot(&mut self) -> bool {
        self.skip_space();
        self.s.starts_with('.')
    }
}

fn unquote(name: &str) -> String {
    for q in ['`', '"'] {
        if name.len() >= 2 && name.starts_with(q) && name.ends_with(q) {
            let inner = &name[1..name.len() - 1];
            return inner.replace(&format!("{q}{q}"), &q.to_string());
        }
    }
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_word_skips_comments() {
        assert_eq!(first_word("  /* x */ create table t (a int)"), "CREATE");
        assert_eq!(first_word("-- c\nBEGIN"), "BEGIN");
        assert_eq!(first_word("insert into t values (1)"), "INSERT");
    }

    #[test]
    fn ddl_schema_names() {
        assert_eq!(
            ddl_schema("ALTER TABLE b.keep ADD COLUMN x INT").as_deref(),
            Some("b")
        );
        assert_eq!(
            ddl_schema("create table if not exists `my db`.`t` (a int)").as_deref(),
            Some("my db")
        );
        assert_eq!(ddl_schema("CREATE TABLE t (a int)"), None);
        assert_eq!(
            ddl_schema("DROP TABLE IF EXISTS x.t1, x.t2").as_deref(),
            Some("x")
        );
        assert_eq!(
            ddl_schema("CREATE DATABASE IF NOT EXISTS shop").as_deref(),
            Some("shop")
        );
        assert_eq!(ddl_schema("DROP SCHEMA `a``b`").as_deref(), Some("a`b"));
        assert_eq!(
            ddl_schema("CREATE UNIQUE INDEX i ON s.t (a)").as_deref(),
            Some("s")
        );
        assert_eq!(ddl_schema("TRUNCATE TABLE s.t").as_deref(), Some("s"));
        assert_eq!(ddl_schema("TRUNCATE s.t").as_deref(), Some("s"));
        assert_eq!(
            ddl_schema("/* c */ RENAME TABLE a.t TO b.t").as_deref(),
            Some("a")
        );
        assert_eq!(ddl_schema("CREATE USER 'u'@'%'"), None);
    }
}
