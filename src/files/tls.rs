//! TLS on the listener (rustls), with the certificate and key re-read when
//! their files change: new connections get the new certificate with no
//! restart, which is what certificates rendered by a Nomad `template` need.
//! With `HOLEPUNCH_TLS_CLIENT_CA_FILE`, the handshake also requires a client
//! certificate (`crate::files::client_cert`).
//!
//! The rustls `ServerConfig` is built here and handed to Pingora's
//! `Acceptor::from_server_config` (pingora-core 0.9.1
//! `listeners/tls/rustls/mod.rs`), which the guard drives (`crate::conn::guard`).
//! It is what Pingora's own `TlsSettings::build` makes (TLS 1.2 and 1.3,
//! the process's crypto provider, a certificate resolver, ALPN), plus the
//! one setting `TlsSettings` cannot make: with client certificates,
//! session resumption is off, so that every connection's certificate is
//! checked against the CAs in use (see `crate::files::client_cert`).
//!
//! A pair that cannot be read, is not a regular file, is over its cap
//! (`files::CERTIFICATE_CHAIN`, `files::PRIVATE_KEY`) or does not go
//! together keeps the last good certificate in use.
//!
//! What is wrong with a PEM file is said in words fixed here
//! (`crate::files::pem::pem_problem`), never with the PEM parser's own error text, which can
//! carry the file's contents: a private key whose line breaks were lost
//! would be logged whole.

use crate::files::client_cert::ClientCas;
use crate::files::pem::pem_problem;
use crate::files::read::{Cap, WatchedFile, CERTIFICATE_CHAIN, PRIVATE_KEY};
use crate::files::reload::{self, Current, Name, Reloadable};
use crate::vars::{path_in_message, ConfigError, TLS_CERT_FILE, TLS_KEY_FILE};
use pingora::listeners::tls::Acceptor;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, CryptoProvider, ResolvesServerCert};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::NoServerSessionStorage;
use rustls::{version, ServerConfig};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// The PEM files for TLS on the listener, re-read when they change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// `HOLEPUNCH_TLS_CLIENT_CA_FILE`: when set, every client must present
    /// a certificate from one of these CAs (`crate::files::client_cert`).
    pub client_ca: Option<PathBuf>,
}

/// Serves the current certificate to every handshake.
pub struct CertReloader {
    files: TlsFiles,
    current: Current<CertifiedKey>,
}

impl fmt::Debug for CertReloader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertReloader")
            .field("cert", &self.files.cert)
            .field("key", &self.files.key)
            .finish()
    }
}

impl CertReloader {
    /// Reads and checks both files at startup; errors are fatal there. Each
    /// names the variable whose file is at fault; a certificate and key that
    /// do not go together are reported under the certificate's, naming both.
    pub fn load(files: &TlsFiles) -> Result<CertReloader, ConfigError> {
        let read = |var: &str, p: &PathBuf, cap: Cap| {
            crate::files::read::read_at_start(p, cap)
                .map_err(|e| ConfigError::with_path(var, p, format!("cannot read: {e}")))
        };
        let cert = read(TLS_CERT_FILE, &files.cert, CERTIFICATE_CHAIN)?;
        let key = read(TLS_KEY_FILE, &files.key, PRIVATE_KEY)?;
        let key = certified_key(files, &cert, &key).map_err(|(var, e)| {
            let path = if var == TLS_KEY_FILE {
                &files.key
            } else {
                &files.cert
            };
            ConfigError::with_path(var, path, e)
        })?;
        Ok(CertReloader {
            files: files.clone(),
            current: Current::new(key),
        })
    }

    /// The guard's TLS acceptor: the certificate from this reloader and,
    /// when `client_cas` is given, a client certificate required from one
    /// of them.
    pub fn acceptor(
        self: &Arc<Self>,
        client_cas: Option<Arc<ClientCas>>,
    ) -> Result<Acceptor, String> {
        pingora::tls::install_default_crypto_provider();
        let provider = CryptoProvider::get_default()
            .cloned()
            .ok_or("no TLS crypto provider installed")?;
        let builder = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&version::TLS12, &version::TLS13])
            .map_err(|e| e.to_string())?;
        let resolver = Arc::clone(self) as Arc<dyn ResolvesServerCert>;
        let checks_clients = client_cas.is_some();
        let builder = match client_cas {
            Some(cas) => builder.with_client_cert_verifier(cas),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(resolver);
        if checks_clients {
            // Neither session IDs nor tickets: a resumed session would skip
            // the client certificate check (rustls 0.23 `server/tls13.rs`,
            // `handle_client_hello`; `server/tls12.rs`).
            config.session_storage = Arc::new(NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        }
        // HTTP/1.1 only, as Pingora's `ALPN::H1` (`protocols/tls/mod.rs`,
        // `to_wire_protocols`): the guard serves HTTP/1.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Acceptor::from_server_config(Arc::new(config)))
    }
}

impl ResolvesServerCert for CertReloader {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// A new certificate is one with another chain: a new key alone would not
/// belong to the same certificate, and `CertifiedKey::from_der` refuses a
/// pair whose public keys differ (rustls 0.23 `crypto/signer.rs`).
impl reload::Value for CertifiedKey {
    fn same(&self, new: &CertifiedKey) -> bool {
        self.cert == new.cert
    }
}

impl Reloadable for CertReloader {
    type Value = CertifiedKey;
    const NAME: Name = Name {
        what: "TLS certificate",
        label: "tls_certificate",
    };

    fn files(&self) -> Vec<WatchedFile> {
        vec![
            WatchedFile::new(&self.files.cert, CERTIFICATE_CHAIN),
            WatchedFile::new(&self.files.key, PRIVATE_KEY),
        ]
    }

    fn parse(&self, contents: &[Vec<u8>]) -> Result<CertifiedKey, String> {
        let [cert, key] = contents else {
            return Err(format!(
                "{} and {}: expected two files",
                self.files.cert.display(),
                self.files.key.display()
            ));
        };
        certified_key(&self.files, cert, key).map_err(|(_, e)| e)
    }

    fn current(&self) -> &Current<CertifiedKey> {
        &self.current
    }
}

/// Parses a PEM certificate chain and private key, and checks that they
/// match. An error says which variable's file is at fault, and why.
fn certified_key(
    files: &TlsFiles,
    cert: &[u8],
    key: &[u8],
) -> Result<CertifiedKey, (&'static str, String)> {
    pingora::tls::install_default_crypto_provider();
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            let e = format!(
                "{}: not a PEM certificate chain: {}",
                path_in_message(&files.cert),
                pem_problem(&e, "certificate")
            );
            (TLS_CERT_FILE, e)
        })?;
    if chain.is_empty() {
        let e = format!("{}: no PEM certificate in it", path_in_message(&files.cert));
        return Err((TLS_CERT_FILE, e));
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| {
        let e = format!(
            "{}: not a PEM private key: {}",
            path_in_message(&files.key),
            pem_problem(
                &e,
                "private key (a PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY section)"
            )
        );
        (TLS_KEY_FILE, e)
    })?;
    let provider = CryptoProvider::get_default().ok_or_else(|| {
        (
            TLS_CERT_FILE,
            "no TLS crypto provider installed".to_string(),
        )
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        let e = format!(
            "the certificate in {} and the private key in {TLS_KEY_FILE}=\"{}\" do not \
             belong together ({e})",
            path_in_message(&files.cert),
            path_in_message(&files.key)
        );
        (TLS_CERT_FILE, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::pem::broken_pem;
    use crate::files::reload::Watchable;

    fn fixture(name: &str) -> Vec<u8> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
        std::fs::read(format!("{dir}/{name}")).unwrap()
    }

    /// Each file that cannot be read is reported under its own variable.
    #[test]
    fn an_unreadable_file_is_reported_under_its_own_variable() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
        let missing = PathBuf::from("/nonexistent-holepunch/tls.key");
        let files = TlsFiles {
            cert: PathBuf::from(dir).join("a.crt"),
            key: missing.clone(),
            client_ca: None,
        };
        let err = CertReloader::load(&files).unwrap_err();
        assert_eq!(err.var, TLS_KEY_FILE);
        assert_eq!(err.value.as_deref(), Some("/nonexistent-holepunch/tls.key"));
        assert!(err.problem.starts_with("cannot read: "), "{err}");
        let files = TlsFiles {
            cert: missing,
            key: PathBuf::from(dir).join("a.key"),
            client_ca: None,
        };
        let err = CertReloader::load(&files).unwrap_err();
        assert_eq!(err.var, TLS_CERT_FILE);
        assert!(err.problem.starts_with("cannot read: "), "{err}");
    }

    #[test]
    fn the_certificate_changes_only_with_its_chain() {
        let dir = std::env::temp_dir().join(format!("holepunch-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = TlsFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
            client_ca: None,
        };
        std::fs::write(&files.cert, fixture("a.crt")).unwrap();
        std::fs::write(&files.key, fixture("a.key")).unwrap();
        let tls = CertReloader::load(&files).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let chain = |tls: &CertReloader| tls.current.load().cert.clone();
        let a = chain(&tls);

        // The same pair, the key file written out again: nothing to swap.
        let same = [
            fixture("a.crt"),
            [fixture("a.key"), b"\n".to_vec()].concat(),
        ];
        assert_eq!(tls.reload(&same), Ok(false));
        assert_eq!(tls.reload(&[fixture("b.crt"), fixture("b.key")]), Ok(true));
        let b = chain(&tls);
        assert_ne!(a, b);
        // Half rotated: refused, the last good pair stays.
        let err = tls
            .reload(&[fixture("a.crt"), fixture("b.key")])
            .unwrap_err();
        assert!(err.contains("do not belong together"), "{err}");
        assert_eq!(chain(&tls), b);
    }

    /// A key or a chain broken in the ways that put the file's contents in
    /// the PEM parser's error (its line breaks lost, a BEGIN line run on
    /// into the base64, a byte base64 does not have) is refused at the
    /// start and on reload with words of our own, holding no part of the
    /// key. The chain is refused with a key in it too (a bundle).
    #[test]
    fn a_broken_pem_file_is_refused_without_a_byte_of_it() {
        let dir = std::env::temp_dir().join(format!("holepunch-tls-pem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = TlsFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
            client_ca: None,
        };
        let key = fixture("a.key");
        let cert = fixture("a.crt");
        for (n, broken) in broken_pem::all(&key).into_iter().enumerate() {
            let bundle = [cert.clone(), broken.clone()].concat();
            for (var, cert_file, key_file) in [
                (TLS_KEY_FILE, &cert, &broken),
                (TLS_CERT_FILE, &bundle, &key),
            ] {
                std::fs::write(&files.cert, cert_file).unwrap();
                std::fs::write(&files.key, key_file).unwrap();
                let err = CertReloader::load(&files).unwrap_err();
                assert_eq!(err.var, var, "{err}");
                let text = err.to_string();
                let why = [
                    "no matching -----END line",
                    "not a well-formed BEGIN line",
                    "not valid base64",
                ][n];
                assert!(text.contains(why), "{text}");
                broken_pem::assert_holds_nothing_of(&text, &key);
            }
        }
        // On reload: the same words, and the last good pair stays.
        std::fs::write(&files.cert, &cert).unwrap();
        std::fs::write(&files.key, &key).unwrap();
        let tls = CertReloader::load(&files).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        for broken in broken_pem::all(&key) {
            let bundle = [cert.clone(), broken.clone()].concat();
            for pair in [[cert.clone(), broken.clone()], [bundle, key.clone()]] {
                let err = tls.reload(&pair).unwrap_err();
                assert!(err.contains("not a PEM"), "{err}");
                broken_pem::assert_holds_nothing_of(&err, &key);
            }
        }
        let err = tls.reload(&[cert.clone(), cert.clone()]).unwrap_err();
        assert!(
            err.ends_with(
                "not a PEM private key: no PEM private key (a PRIVATE KEY, RSA PRIVATE KEY \
                 or EC PRIVATE KEY section) in it"
            ),
            "{err}"
        );
    }
}
