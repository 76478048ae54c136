//! Reading a private CA's PEM file for a sink's TLS client (`ca_file`,
//! `schema_registry_ca_file`).
//!
//! Invariant: a file that cannot be read or holds no `CERTIFICATE` block is
//! refused at start with the config key and the path. An empty or wrong file
//! would otherwise leave the client with only the built-in roots, and the
//! first request would fail later with a certificate error that does not
//! name the file. Parsing the blocks stays with each client's TLS library.

use std::path::Path;

/// What opens every PEM certificate block.
const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";

/// Reads `path` (the value of config key `key`) and returns its bytes when
/// they hold at least one PEM certificate block.
pub fn read_ca_pem(key: &str, path: &Path) -> Result<Vec<u8>, String> {
    let pem =
        std::fs::read(path).map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))?;
    if !pem.windows(BEGIN.len()).any(|w| w == BEGIN) {
        return Err(format!(
            "{key}: {}: holds no PEM certificate (no \"-----BEGIN CERTIFICATE-----\" line); \
             give the CA's certificate in PEM form",
            path.display()
        ));
    }
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("rowstream-pem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn refuses_missing_empty_and_non_certificate_files() {
        let e = read_ca_pem("ca_file", Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(
            e.starts_with("ca_file: cannot read /nonexistent/ca.pem"),
            "{e}"
        );
        for (name, bytes) in [
            ("empty.pem", &b""[..]),
            ("der.pem", &[0x30, 0x82, 0x01, 0x0a][..]),
            (
                "key.pem",
                &b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"[..],
            ),
        ] {
            let p = file(name, bytes);
            let e = read_ca_pem("schema_registry_ca_file", &p).unwrap_err();
            assert!(
                e.starts_with(&format!(
                    "schema_registry_ca_file: {}: holds no PEM certificate",
                    p.display()
                )),
                "{e}"
            );
        }
    }

    #[test]
    fn returns_the_bytes_of_a_file_with_a_certificate() {
        let text = b"# the CA\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let p = file("ca.pem", text);
        assert_eq!(read_ca_pem("ca_file", &p).unwrap(), text);
    }
}
