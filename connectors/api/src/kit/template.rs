//! Table-name templates: a string in which `{name}` (the source's logical
//! server name), `{db}` and `{table}` are substituted per table, as in Kafka
//! topic and Elasticsearch index names.
//!
//! Invariants kept: a template that passes [`TableTemplate::parse`] has no
//! other `{`/`}` than those three placeholders and contains `{table}` (so
//! two tables never share a target); rendering substitutes each placeholder
//! once, from the parsed pieces, never inside a substituted value.

use std::fmt;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Name,
    Db,
    Table,
}

/// A parsed, valid table-name template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableTemplate {
    source: String,
    pieces: Vec<Piece>,
}

/// Why a template is refused; the `Display` text is what the config error
/// shows after the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// Empty or blank.
    Empty,
    /// A brace that is not one of the three placeholders.
    UnknownPlaceholder(String),
    /// No `{table}`: `why` says what would collide (e.g. "records are keyed
    /// per table and tables must not share a topic").
    NoTable { template: String, why: String },
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::Empty => write!(f, "must not be empty"),
            TemplateError::UnknownPlaceholder(t) => write!(
                f,
                "{t:?}: only {{name}}, {{db}} and {{table}} may be substituted"
            ),
            TemplateError::NoTable { template, why } => {
                write!(f, "{template:?} must contain {{table}}: {why}")
            }
        }
    }
}

impl std::error::Error for TemplateError {}

impl TableTemplate {
    /// Parses and validates `template`; `why_table` completes the message
    /// when `{table}` is missing (what goes wrong when tables share a target).
    pub fn parse(template: &str, why_table: &str) -> Result<TableTemplate, TemplateError> {
        if template.trim().is_empty() {
            return Err(TemplateError::Empty);
        }
        let mut pieces = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            let (piece, len) = if let Some(r) = rest.strip_prefix("{name}") {
                (Piece::Name, rest.len() - r.len())
            } else if let Some(r) = rest.strip_prefix("{db}") {
                (Piece::Db, rest.len() - r.len())
            } else if let Some(r) = rest.strip_prefix("{table}") {
                (Piece::Table, rest.len() - r.len())
            } else if rest.starts_with(['{', '}']) {
                return Err(TemplateError::UnknownPlaceholder(template.to_string()));
            } else {
                let len = rest.find(['{', '}']).unwrap_or(rest.len());
                (Piece::Text(rest[..len].to_string()), len)
            };
            pieces.push(piece);
            rest = &rest[len..];
        }
        if !pieces.contains(&Piece::Table) {
            return Err(TemplateError::NoTable {
                template: template.to_string(),
                why: why_table.to_string(),
            });
        }
        Ok(TableTemplate {
            source: template.to_string(),
            pieces,
        })
    }

    /// The literal text before the first placeholder (e.g. to check a
    /// prefix a target refuses).
    pub fn prefix(&self) -> &str {
        match self.pieces.first() {
            Some(Piece::Text(t)) => t,
            _ => "",
        }
    }

    /// The template as configured.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The name for one table.
    pub fn render(&self, name: &str, db: &str, table: &str) -> String {
        let mut out = String::with_capacity(self.source.len() + db.len() + table.len());
        for p in &self.pieces {
            out.push_str(match p {
                Piece::Text(t) => t,
                Piece::Name => name,
                Piece::Db => db,
                Piece::Table => table,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_validates_and_renders() {
        let t = TableTemplate::parse("{name}.{db}.{table}", "x").unwrap();
        assert_eq!(t.render("srv", "shop", "orders"), "srv.shop.orders");
        assert_eq!(t.prefix(), "");
        let t = TableTemplate::parse("cdc-{table}", "x").unwrap();
        assert_eq!(t.render("s", "d", "{db}"), "cdc-{db}", "no re-substitution");
        assert_eq!(t.prefix(), "cdc-");
        assert_eq!(
            TableTemplate::parse("{name}.{schema}.{table}", "x")
                .unwrap_err()
                .to_string(),
            "\"{name}.{schema}.{table}\": only {name}, {db} and {table} may be substituted"
        );
        assert_eq!(
            TableTemplate::parse("{db}", "tables must not share one")
                .unwrap_err()
                .to_string(),
            "\"{db}\" must contain {table}: tables must not share one"
        );
        assert_eq!(TableTemplate::parse(" ", "x"), Err(TemplateError::Empty));
        assert!(TableTemplate::parse("a}{table}", "x").is_err());
    }
}
