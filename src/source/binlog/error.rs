//! The decoder's error: why a TABLE_MAP or rows event could not be decoded.
//!
//! Invariant: every variant names where it happened (table, column or event),
//! so the message alone tells the operator what to fix.

/// Why an event could not be decoded. Every variant names where it happened.
#[derive(thiserror::Error, Debug)]
pub enum DecodeError {
    #[error("table {db}.{table} has no column names in its TABLE_MAP event: set binlog_row_metadata=FULL on the source server (SET PERSIST binlog_row_metadata=FULL) and restart rowstream")]
    MissingColumnNames { db: String, table: String },
    #[error("column {db}.{table}.{column} has type {type_name}, which rowstream cannot decode")]
    UnsupportedType {
        db: String,
        table: String,
        column: String,
        type_name: String,
    },
    #[error("column {db}.{table}.{column}: {detail}")]
    InvalidText {
        db: String,
        table: String,
        column: String,
        detail: String,
    },
    #[error("column {db}.{table}.{column}: value cannot be decoded: {detail}")]
    Value {
        db: String,
        table: String,
        column: String,
        detail: String,
    },
    #[error("malformed {context}: {detail}")]
    Malformed { context: String, detail: String },
    #[error("binlog event type {event_type} ({name}) is not a row event this decoder handles")]
    UnsupportedEvent { event_type: u8, name: &'static str },
    #[error("rows event for table id {rows_table_id} decoded with the schema of table id {schema_table_id} ({db}.{table})")]
    TableIdMismatch {
        rows_table_id: u64,
        schema_table_id: u64,
        db: String,
        table: String,
    },
}
