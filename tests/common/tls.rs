//! Test certificates made with the `openssl` CLI ([`TestCerts`]): a throwaway CA and a
//! server certificate it signed for `127.0.0.1` and `localhost`, and a rustls server
//! configuration of them ([`TestCerts::rustls_server`]) for in-test TLS servers.
//!
//! Invariants: the files live in a fresh [`TmpDir`] of their own (removed on drop); the
//! CA is valid for this run only (7 days), so no test ever trusts anything but what it
//! made; a failing `openssl` is a panic with its output.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use super::TmpDir;

/// `ca.pem` (the CA certificate), `server.crt` (signed by it, SAN IP:127.0.0.1 and
/// DNS:localhost) and `server.key` (PKCS#8 PEM) in a fresh dir.
pub struct TestCerts {
    pub dir: TmpDir,
}

impl TestCerts {
    /// Makes a CA and a server certificate (CN `cn`, no spaces) with openssl.
    pub fn make(cn: &str) -> TestCerts {
        let dir = TmpDir::new("certs");
        // Each command is one line of words (no argument has a space).
        let run = |cmd: &str| {
            let args: Vec<&str> = cmd.split_whitespace().collect();
            let out = Command::new("openssl")
                .args(&args)
                .current_dir(&dir.0)
                .output()
                .expect("run openssl (is it installed?)");
            assert!(
                out.status.success(),
                "openssl {cmd}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(
            "req -x509 -newkey rsa:2048 -nodes -days 7 -subj /CN=rowstream-test-ca \
             -keyout ca.key -out ca.pem",
        );
        run(&format!(
            "req -newkey rsa:2048 -nodes -subj /CN={cn} -keyout server.key -out server.csr"
        ));
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        run(
            "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 7 \
             -extfile san.ext -out server.crt",
        );
        TestCerts { dir }
    }

    /// The CA certificate (PEM), for a client's trust roots.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The server's certificate (PEM).
    pub fn cert_file(&self) -> PathBuf {
        self.dir.join("server.crt")
    }

    /// The server's private key (PEM).
    pub fn key_file(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// A rustls server configuration presenting the server certificate (ring provider).
    pub fn rustls_server(&self) -> Arc<rustls::ServerConfig> {
        let certs: Vec<_> =
            rustls_pemfile::certs(&mut &std::fs::read(self.cert_file()).unwrap()[..])
                .collect::<Result<_, _>>()
                .unwrap();
        let key = rustls_pemfile::private_key(&mut &std::fs::read(self.key_file()).unwrap()[..])
            .unwrap()
            .expect("a private key in server.key");
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        Arc::new(cfg)
    }
}
