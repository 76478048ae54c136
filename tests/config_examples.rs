//! Every example configuration under `deploy/` loads and validates, and the
//! config loader refuses what it must refuse: unknown keys at every level
//! (naming the key), missing required keys; environment overrides apply.
//!
//! No server needed: these tests only read files.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::path::{Path, PathBuf};

use common::TmpDir;
use rowstream::config::{self, ConfigError, SinkConfig};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn examples() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .expect("deploy/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

/// `text` written to `rowstream.toml` in a fresh scratch dir (removed with the dir).
fn temp_config(name: &str, text: &str) -> (TmpDir, PathBuf) {
    let dir = TmpDir::new(&format!("config-{name}"));
    let path = dir.join("rowstream.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

const MINIMAL: &str = r#"
[source]
url = "mysql://repl:secret@127.0.0.1:3306"
server_id = 5401
name = "prod"

[checkpoint]
dir = "/var/lib/rowstream"

[[sinks]]
type = "file"
name = "backup"
dir = "/var/lib/rowstream/backup"
"#;

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

fn load_text(name: &str, text: &str) -> Result<config::Config, ConfigError> {
    let (_dir, path) = temp_config(name, text);
    config::load_with_env(&path, no_env())
}

/// The error of loading `text`, which must be a Parse error naming `key`.
fn parse_error_naming(name: &str, text: &str, key: &str) -> String {
    match load_text(name, text) {
        Err(e @ ConfigError::Parse { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&format!("`{key}`")), "{name}: {msg}");
            assert!(
                msg.contains("rowstream.toml"),
                "{name}: the file is named: {msg}"
            );
            msg
        }
        other => panic!("{name}: expected a parse error naming `{key}`, got {other:?}"),
    }
}

#[test]
fn every_deploy_example_loads_and_validates() {
    let files = examples();
    assert!(
        files.len() >= 2,
        "expected example configs in {}, found {files:?}",
        deploy_dir().display()
    );
    for f in &files {
        // The process environment too, as the service would; CI sets no
        // ROWSTREAM_*__* variables.
        let c = config::load(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        c.validate().unwrap();
        assert!(!c.sinks.is_empty(), "{}", f.display());
        assert!(!c.source.urls().is_empty(), "{}", f.display());
        // Debug output never shows the example password.
        let dbg = format!("{c:?}");
        assert!(!dbg.contains(":secret@"), "{}: {dbg}", f.display());
    }
}

#[test]
fn the_mysql_example_fails_over_between_two_servers() {
    let c = config::load_with_env(&deploy_dir().join("rowstream.toml"), no_env()).unwrap();
    let urls = c.source.urls();
    assert_eq!(urls.len(), 2, "{urls:?}");
    let opts = c.source.conn_opts().unwrap();
    assert_ne!(opts[0].host, opts[1].host);
    assert!(matches!(c.sinks[0], SinkConfig::File(_)));
}

#[test]
fn minimal_config_loads() {
    let c = load_text("minimal", MINIMAL).unwrap();
    assert_eq!(c.source.name, "prod");
    assert_eq!(c.source.start, "latest");
    assert_eq!(c.sinks[0].name(), "backup");
}

#[test]
fn unknown_key_in_source_is_rejected() {
    let text = MINIMAL.replace("name = \"prod\"", "name = \"prod\"\nserverid = 7");
    let msg = parse_error_naming("unknown-source", &text, "serverid");
    assert!(msg.contains("line 6"), "{msg}");
}

#[test]
fn unknown_key_in_sink_is_rejected() {
    let text = format!("{MINIMAL}segment_bytes = 10\n");
    parse_error_naming("unknown-sink", &text, "segment_bytes");
}

#[test]
fn unknown_key_at_top_level_is_rejected() {
    let text = format!("log_level = \"debug\"\n{MINIMAL}");
    parse_error_naming("unknown-top", &text, "log_level");
    let text = format!("{MINIMAL}\n[telemetry]\nlisten = \"0.0.0.0:9100\"\n");
    parse_error_naming("unknown-section", &text, "telemetry");
}

#[test]
fn unknown_key_in_checkpoint_is_rejected() {
    let text = MINIMAL.replace(
        "dir = \"/var/lib/rowstream\"\n",
        "dir = \"/var/lib/rowstream\"\ninterval = 5\n",
    );
    parse_error_naming("unknown-checkpoint", &text, "interval");
}

#[test]
fn missing_required_key_is_an_error() {
    for (key, text) in [
        ("server_id", MINIMAL.replace("server_id = 5401\n", "")),
        ("name", MINIMAL.replace("name = \"prod\"\n", "")),
        ("dir", MINIMAL.replace("dir = \"/var/lib/rowstream\"\n", "")),
        ("source", MINIMAL.replace("[source]", "[other]")),
    ] {
        let msg = match load_text(&format!("missing-{key}"), &text) {
            Err(e) => e.to_string(),
            Ok(c) => panic!("missing {key} accepted: {c:?}"),
        };
        assert!(msg.contains(key), "{key}: {msg}");
    }
    let msg = load_text("missing-all", "").unwrap_err().to_string();
    assert!(msg.contains("missing field `source`"), "{msg}");
}

#[test]
fn environment_overrides_source_url_and_sink_dir() {
    let (_dir, path) = temp_config("env", MINIMAL);
    let env = [
        (
            "ROWSTREAM_SOURCE__URL",
            "mysql://cdc:other@db9:3307?tls=required",
        ),
        ("ROWSTREAM_SINKS__0__DIR", "/srv/backup"),
        ("ROWSTREAM_LOG", "debug"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let c = config::load_with_env(&path, env).unwrap();
    assert_eq!(
        c.source.urls(),
        vec!["mysql://cdc:other@db9:3307?tls=required"]
    );
    assert_eq!(c.source.conn_opts().unwrap()[0].port, 3307);
    #[allow(irrefutable_let_patterns)]
    let SinkConfig::File(sink) = &c.sinks[0] else {
        panic!("not a file sink")
    };
    assert_eq!(sink.dir, PathBuf::from("/srv/backup"));
    // The file itself is unchanged.
    let c = config::load_with_env(&path, no_env()).unwrap();
    assert_eq!(c.source.urls(), vec!["mysql://repl:secret@127.0.0.1:3306"]);
}

#[test]
fn invalid_values_name_the_key() {
    let text = MINIMAL.replace("server_id = 5401", "server_id = 0");
    match load_text("invalid-server-id", &text) {
        Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "source.server_id"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn snapshot_section() {
    use rowstream::config::SnapshotMode;
    let c = load_text("snap-default", MINIMAL).unwrap();
    assert_eq!(c.snapshot.mode, SnapshotMode::Initial);
    assert_eq!((c.snapshot.threads, c.snapshot.chunk_rows), (2, 10_000));
    assert_eq!(c.snapshot.signal_schema, None);
    let text = format!(
        "[snapshot]\nmode = \"when_needed\"\nthreads = 4\nchunk_rows = 500\nsignal_schema = \"ops\"\n{MINIMAL}"
    );
    let c = load_text("snap", &text).unwrap();
    assert_eq!(c.snapshot.mode, SnapshotMode::WhenNeeded);
    assert_eq!((c.snapshot.threads, c.snapshot.chunk_rows), (4, 500));
    assert_eq!(c.snapshot.signal_schema.as_deref(), Some("ops"));
    parse_error_naming(
        "snap-unknown",
        &format!("[snapshot]\nchunk = 5\n{MINIMAL}"),
        "chunk",
    );
    assert!(load_text(
        "snap-mode",
        &format!("[snapshot]\nmode = \"always\"\n{MINIMAL}")
    )
    .is_err());
    match load_text(
        "snap-threads",
        &format!("[snapshot]\nthreads = 0\n{MINIMAL}"),
    ) {
        Err(e @ ConfigError::Invalid { .. }) => {
            assert!(e.to_string().contains("snapshot.threads"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}
