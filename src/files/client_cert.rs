//! Client certificates: with `HOLEPUNCH_TLS_CLIENT_CA_FILE` set, the TLS
//! listener requires every client to present a certificate that chains to
//! one of the CA certificates in that file, and refuses any other client
//! during the handshake, before a byte of HTTP is read. It is a credential
//! in its own right, with or without client tokens (`crate::files::client_auth`).
//!
//! **How it reaches rustls.** [`ClientCas`] is a rustls `ClientCertVerifier`
//! that hands each certificate to rustls's own `WebPkiClientVerifier`, built
//! for the CAs in the file as it was last read (rustls 0.23
//! `webpki/client_verifier.rs`, `verify_client_cert`: webpki's path
//! building with `KeyUsage::client_auth()`). The verifier in use lives in a
//! [`Current`], so a new CA file applies to the next handshake, with no
//! restart and no new listener. `crate::files::tls` builds the rustls
//! `ServerConfig` with it, rather than through Pingora's `TlsSettings`
//! (which has `set_client_cert_verifier`, pingora-core 0.9.1
//! `listeners/tls/rustls/mod.rs`): `TlsSettings::build` leaves rustls's
//! session resumption on, and see below why that must be off.
//!
//! **What a client certificate must be** (rustls-webpki 0.103
//! `verify_cert.rs`): signed, through at most six intermediates the client
//! sends, by a CA in the file; within its validity dates; not a CA
//! certificate itself; and, if it has an extended key usage, one that lists
//! `clientAuth` (`KeyUsage::client_auth`, "required if present"). Anything
//! else, no certificate included, ends the handshake with a TLS alert
//! (`certificate_required`, `unknown_ca`, `certificate_expired`, ...):
//! nothing is read from the client, nothing is forwarded, and it costs the
//! Nomad servers nothing. The handshake counts toward
//! `HOLEPUNCH_CLIENT_HEADER_TIMEOUT` as any TLS handshake does
//! (`crate::conn::guard`), rustls caps a handshake message at 64 KiB
//! (`msgs/deframer/handshake.rs`, `MAX_HANDSHAKE_SIZE`) and webpki a chain
//! at 100 signature checks (`verify_cert.rs`, `Budget`), so a hostile chain
//! costs no more than a bounded handshake.
//!
//! **No hints.** The CertificateRequest names no CA
//! ([`ClientCertVerifier::root_hint_subjects`] is empty, which RFC 8446
//! 4.2.4 allows: the client then sends the certificate it has). It tells a
//! client that has no certificate nothing about the trust anchors, and it
//! never goes stale while the CA file is replaced.
//!
//! **No resumption.** A resumed TLS session carries the client certificate
//! of the handshake that made it, and rustls does not verify it again (rustls
//! 0.23 `server/tls13.rs`, `handle_client_hello`: `peer_certificates` is
//! taken from the resumption data; `server/tls12.rs` likewise). By default a
//! session ticket lasts 24 hours and each resumption hands out new ones
//! (`server/tls13.rs`, `emit_ticket`), so a client whose CA was removed, or
//! whose certificate expired, could go on resuming for as long as it liked.
//! With client certificates on, `crate::files::tls` turns session storage and
//! tickets off: every connection makes a full handshake against the CAs in
//! use. Scrapers keep their connections alive, so this costs little.
//!
//! **A broken file fails closed.** The workload token and the server's
//! certificate keep their last good value when their file breaks: an old
//! one serves, none would not. The CA file is a list of who may connect, as
//! the client token file is, so it fails closed: when it cannot be read, or
//! holds no usable CA certificate, no CA is trusted and every handshake is
//! refused (alert `access_denied`) until the file is fixed; the watcher logs
//! a warning and counts `holepunch_reload_failures_total{file="tls_client_ca"}`.
//! Keeping the last good CAs would keep exactly the one the operator may be
//! removing: taking a compromised CA out of a bundle while a template
//! renders it badly must not leave it trusted. (A well-formed file with the
//! CA removed simply replaces the set.) `/ready` needs no rule of its own:
//! it is behind the same handshake, so it fails with everything else. At
//! startup, a file that cannot be used stops the proxy (exit 2).
//!
//! **Kept-alive connections too.** TLS checks a certificate once, at the
//! handshake, and a scraper keeps its connection for as long as it scrapes
//! (Prometheus every 15 s, well inside the proxy's keep-alive). So before
//! each request the guard asks [`ClientCas::recheck`]: when the CAs in use
//! changed since the connection's certificate was last checked, or
//! [`RECHECK_INTERVAL`] has passed, the certificate is checked again, and a
//! connection whose certificate no longer passes (its CA removed, the file
//! broken, the certificate expired) is closed before the request is
//! forwarded. Most requests cost an atomic load, a clock read and two
//! compares.
//!
//! **Long responses too.** A blocking query, an event stream or an
//! upgraded `exec` session can last far longer than one request's start.
//! So the proxy asks again ([`ClientCas::recheck_stream`]) when the
//! response header comes from the socket and on every body chunk either
//! way, with the same per-connection record the guard keeps (on the
//! connection's stream, `crate::conn::deadline::WriteDeadline::checked`): a
//! response whose client certificate is no longer trusted is cut at its
//! next chunk, the connection closed, and one whose header has not been
//! written gets nothing at all. The cost per chunk is the guard's per
//! request, and a lock nobody else holds.
//!
//! Revocation is by removing the CA (or letting the certificate expire);
//! certificate revocation lists are not read.

use crate::conn::deadline::{Checked, WriteDeadline};
use crate::files::read::{self, WatchedFile};
use crate::files::reload::{self, Current, Name, Reloadable};
use crate::vars::{ConfigError, TLS_CLIENT_CA_FILE};
use pingora::protocols::Stream;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore};
use rustls::{Error, SignatureScheme};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a kept-alive connection's client certificate is trusted, while
/// the CAs do not change, before it is checked again: a certificate that
/// expires loses its connection within this.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(60);

/// Numbers each set of CAs made, so that a connection can tell whether the
/// set in use is the one its certificate was checked against.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The CAs client certificates must chain to, re-read when their file
/// changes, and the verifier rustls asks.
pub struct ClientCas {
    path: PathBuf,
    /// The crypto provider of the handshake: its signature algorithms.
    provider: Arc<CryptoProvider>,
    current: Current<Trusted>,
}

/// The CAs in use: what one reading of the file made.
pub struct Trusted {
    /// The CA certificates, as the file holds them.
    certs: Vec<CertificateDer<'static>>,
    /// rustls's verifier for them; `None` trusts no one (the file is broken).
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    /// This set's number, unique in the process.
    generation: u64,
}

impl Trusted {
    fn new(
        certs: Vec<CertificateDer<'static>>,
        verifier: Option<Arc<dyn ClientCertVerifier>>,
    ) -> Trusted {
        Trusted {
            certs,
            verifier,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// No CA: every client certificate is refused.
    fn none() -> Trusted {
        Trusted::new(Vec::new(), None)
    }

    /// Checks a client's certificate chain (its own first) against these CAs.
    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        match &self.verifier {
            Some(verifier) => verifier.verify_client_cert(end_entity, intermediates, now),
            None => Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
        }
    }

    /// How many CA certificates are trusted.
    pub fn len(&self) -> usize {
        if self.verifier.is_some() {
            self.certs.len()
        } else {
            0
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A new set is one with other certificates, or a working set after none.
impl reload::Value for Trusted {
    fn same(&self, new: &Trusted) -> bool {
        self.certs == new.certs && self.verifier.is_some() == new.verifier.is_some()
    }
}

impl fmt::Debug for ClientCas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCas")
            .field("path", &self.path)
            .field("trusted", &self.current.load().len())
            .finish()
    }
}

impl ClientCas {
    /// Reads and checks the CA file at startup; a problem is fatal there,
    /// named under `HOLEPUNCH_TLS_CLIENT_CA_FILE`.
    pub fn load(path: &Path) -> Result<ClientCas, ConfigError> {
        let error = |problem: String| ConfigError::with_path(TLS_CLIENT_CA_FILE, path, problem);
        pingora::tls::install_default_crypto_provider();
        let provider = CryptoProvider::get_default()
            .cloned()
            .ok_or_else(|| error("no TLS crypto provider installed".to_string()))?;
        let raw = read::read_at_start(path, read::CLIENT_CAS)
            .map_err(|e| error(format!("cannot read: {e}")))?;
        let trusted = trust(&provider, &raw).map_err(error)?;
        Ok(ClientCas {
            path: path.to_path_buf(),
            provider,
            current: Current::new(trusted),
        })
    }

    /// The CAs in use now.
    pub fn trusted(&self) -> arc_swap::Guard<Arc<Trusted>> {
        self.current.load()
    }

    /// Taken just before a connection's handshake: the handshake checks
    /// its certificate against these CAs or newer ones.
    pub fn checked_now(&self, now: Instant) -> Checked {
        Checked::new(self.current.load().generation, now)
    }

    /// Whether a connection whose client presented `chain` (its own
    /// certificate first, as the handshake accepted it) may send another
    /// request. The chain is checked again when the CAs in use are not
    /// those of `checked`, or [`RECHECK_INTERVAL`] after it; `checked` is
    /// brought up to date when it passes.
    pub fn recheck(
        &self,
        chain: Option<&[CertificateDer<'static>]>,
        checked: &mut Checked,
        now: Instant,
    ) -> Result<(), Error> {
        let trusted = self.current.load();
        let fresh = now.saturating_duration_since(checked.at()) < RECHECK_INTERVAL;
        if trusted.generation == checked.generation() && fresh {
            return Ok(());
        }
        let (end_entity, intermediates) = chain
            .and_then(|chain| chain.split_first())
            .ok_or(Error::NoCertificatesPresented)?;
        trusted.verify(end_entity, intermediates, UnixTime::now())?;
        *checked = Checked::new(trusted.generation, now);
        Ok(())
    }

    /// [`ClientCas::recheck`] for a client's stream: the chain its TLS
    /// session holds, and the record of its last check that the guard keeps
    /// on the stream (`crate::conn::deadline::WriteDeadline::checked`). A stream
    /// with no record (not the guard's) is checked in full.
    pub fn recheck_stream(&self, stream: &Stream, now: Instant) -> Result<(), Error> {
        let chain = stream.get_ssl().and_then(|tls| tls.peer_cert_chain_der());
        match WriteDeadline::checked(stream) {
            Some(record) => {
                let mut checked = record.lock().unwrap_or_else(|e| e.into_inner());
                self.recheck(chain, &mut checked, now)
            }
            None => self.recheck(chain, &mut Checked::never(now), now),
        }
    }
}

/// The CAs a CA file holds, and rustls's verifier for them. Every PEM
/// `CERTIFICATE` in it is a CA; other PEM sections (a key, say) are skipped.
/// An error says what is wrong, for the operator.
fn trust(provider: &Arc<CryptoProvider>, raw: &[u8]) -> Result<Trusted, String> {
    let certs = CertificateDer::pem_slice_iter(raw)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "not a PEM file of CA certificates: {}",
                crate::files::pem::pem_problem(&e, "certificate")
            )
        })?;
    if certs.is_empty() {
        return Err("no PEM certificate in it: expected the CA certificates \
                    that client certificates must chain to"
            .to_string());
    }
    let mut roots = RootCertStore::empty();
    for (n, cert) in certs.iter().enumerate() {
        roots.add(cert.clone()).map_err(|e| {
            format!(
                "certificate {} of {} cannot be a CA: {e}",
                n + 1,
                certs.len()
            )
        })?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("cannot check client certificates against it: {e}"))?;
    Ok(Trusted::new(certs, Some(verifier)))
}

impl Reloadable for ClientCas {
    type Value = Trusted;
    const NAME: Name = Name {
        what: "TLS client CAs",
        label: "tls_client_ca",
    };

    fn files(&self) -> Vec<WatchedFile> {
        vec![WatchedFile::new(&self.path, read::CLIENT_CAS)]
    }

    fn parse(&self, contents: &[Vec<u8>]) -> Result<Trusted, String> {
        let [raw] = contents else {
            return Err(format!("{}: expected one file", self.path.display()));
        };
        trust(&self.provider, raw).map_err(|why| format!("{}: {why}", self.path.display()))
    }

    fn current(&self) -> &Current<Trusted> {
        &self.current
    }

    /// Fails closed: see the module's documentation.
    fn fallback(&self) -> Option<(Trusted, &'static str)> {
        Some((
            Trusted::none(),
            "no client certificate is trusted: every TLS handshake is refused until it is fixed",
        ))
    }
}

/// rustls's questions, answered from the CAs in use at the moment it asks.
impl ClientCertVerifier for ClientCas {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.current.load().verify(end_entity, intermediates, now)
    }

    // The signature checks use no CA: the provider's algorithms, as
    // `WebPkiClientVerifier` itself does (rustls 0.23
    // `webpki/client_verifier.rs`).
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::reload::Watchable;

    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/client");

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{DIR}/{name}")).unwrap()
    }

    fn der(name: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(&fixture(name)).unwrap()
    }

    /// The fixtures' CA file, loaded as at startup.
    fn cas(file: &str) -> ClientCas {
        ClientCas::load(&PathBuf::from(format!("{DIR}/{file}"))).unwrap()
    }

    /// What the verifier says of a client certificate today.
    fn verify(cas: &ClientCas, name: &str) -> Result<(), Error> {
        cas.verify_client_cert(&der(name), &[], UnixTime::now())
            .map(drop)
    }

    #[test]
    fn a_certificate_from_a_trusted_ca_is_accepted_and_others_are_not() {
        let cas = cas("ca.crt");
        assert_eq!(cas.trusted().len(), 1);
        assert!(cas.client_auth_mandatory());
        assert!(
            cas.root_hint_subjects().is_empty(),
            "no CA names handed out"
        );
        assert_eq!(verify(&cas, "client.crt"), Ok(()));
        assert_eq!(
            verify(&cas, "other.crt"),
            Err(Error::InvalidCertificate(CertificateError::UnknownIssuer))
        );
        assert!(
            matches!(
                verify(&cas, "expired.crt"),
                Err(Error::InvalidCertificate(
                    CertificateError::ExpiredContext { .. }
                ))
            ),
            "{:?}",
            verify(&cas, "expired.crt")
        );
        // Signed by the right CA, but for servers only.
        assert!(
            matches!(
                verify(&cas, "server-only.crt"),
                Err(Error::InvalidCertificate(
                    CertificateError::InvalidPurposeContext { .. }
                        | CertificateError::InvalidPurpose
                ))
            ),
            "{:?}",
            verify(&cas, "server-only.crt")
        );
        // A CA certificate is not a client's.
        assert!(verify(&cas, "ca.crt").is_err());
    }

    #[test]
    fn a_file_with_no_ca_certificate_is_refused_at_startup() {
        let dir = std::env::temp_dir().join(format!("holepunch-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, contents, problem) in [
            ("empty.pem", Vec::new(), "no PEM certificate in it"),
            ("key.pem", fixture("ca.key"), "no PEM certificate in it"),
            (
                "broken.pem",
                b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n".to_vec(),
                "not a PEM file of CA certificates",
            ),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, contents).unwrap();
            let err = ClientCas::load(&path).unwrap_err();
            assert_eq!(err.var, TLS_CLIENT_CA_FILE, "{name}");
            assert_eq!(err.value.as_deref(), path.to_str(), "{name}");
            assert!(err.problem.starts_with(problem), "{name}: {err}");
        }
        let err = ClientCas::load(&dir.join("missing.pem")).unwrap_err();
        assert!(err.problem.starts_with("cannot read: "), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A CA file broken in the ways that put its contents into the PEM
    /// parser's error (a key pasted in on one line, a BEGIN line run on, a
    /// byte base64 does not have) is refused at the start and on reload
    /// with words holding no part of it.
    #[test]
    fn a_broken_ca_file_is_refused_without_a_byte_of_it() {
        use crate::files::pem::broken_pem;
        let dir = std::env::temp_dir().join(format!("holepunch-ca-pem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ca.pem");
        let cas = cas("ca.crt");
        for secret in [fixture("ca.key"), fixture("ca.crt")] {
            for broken in broken_pem::all(&secret) {
                let file = [fixture("ca.crt"), broken].concat();
                std::fs::write(&path, &file).unwrap();
                let err = ClientCas::load(&path).unwrap_err().to_string();
                assert!(err.contains("not a PEM file of CA certificates"), "{err}");
                broken_pem::assert_holds_nothing_of(&err, &secret);
                let err = cas.reload(&[file]).unwrap_err();
                broken_pem::assert_holds_nothing_of(&err, &secret);
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A new file replaces the set; a broken one leaves none, so a CA the
    /// operator is removing is never kept because the file broke.
    #[test]
    fn a_reload_replaces_the_cas_and_a_broken_file_trusts_none() {
        let cas = cas("ca.crt");
        assert_eq!(cas.reload(&[fixture("ca.crt")]), Ok(false), "unchanged");
        // Both CAs: both clients.
        let both = [fixture("ca.crt"), fixture("other-ca.crt")].concat();
        assert_eq!(cas.reload(&[both]), Ok(true));
        assert_eq!(cas.trusted().len(), 2);
        assert_eq!(verify(&cas, "client.crt"), Ok(()));
        assert_eq!(verify(&cas, "other.crt"), Ok(()));
        // The first CA removed: its client is refused at once.
        assert_eq!(cas.reload(&[fixture("other-ca.crt")]), Ok(true));
        assert!(verify(&cas, "client.crt").is_err());
        assert_eq!(verify(&cas, "other.crt"), Ok(()));

        // A broken file is refused, and fails closed.
        let err = cas.reload(&[b"# nothing here\n".to_vec()]).unwrap_err();
        assert!(err.ends_with("no PEM certificate in it: expected the CA certificates that client certificates must chain to"), "{err}");
        assert!(cas.fail().is_some(), "fails closed");
        assert!(cas.trusted().is_empty());
        assert_eq!(
            verify(&cas, "other.crt"),
            Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure
            ))
        );
        // The same file as before the break is taken again.
        assert_eq!(cas.reload(&[fixture("other-ca.crt")]), Ok(true));
        assert_eq!(verify(&cas, "other.crt"), Ok(()));
    }

    /// A kept-alive connection's certificate is checked again when the CAs
    /// change, and once a while has passed (for one that expired since).
    #[test]
    fn a_kept_alive_certificate_is_checked_again_when_the_cas_change_or_in_a_while() {
        let cas = cas("ca.crt");
        let start = Instant::now();
        let later = start + RECHECK_INTERVAL;
        let client = [der("client.crt")];
        let expired = [der("expired.crt")];

        // As the handshake left them: nothing checked again for a while, so
        // even a certificate that expired since passes...
        let mut checked = cas.checked_now(start);
        assert_eq!(cas.recheck(Some(&expired), &mut checked, start), Ok(()));
        // ...until the interval has passed.
        let err = cas.recheck(Some(&expired), &mut checked, later);
        assert!(
            matches!(
                err,
                Err(Error::InvalidCertificate(
                    CertificateError::ExpiredContext { .. }
                ))
            ),
            "{err:?}"
        );
        let mut checked = cas.checked_now(start);
        assert_eq!(cas.recheck(Some(&client), &mut checked, later), Ok(()));
        assert_eq!(
            cas.recheck(None, &mut checked, later),
            Ok(()),
            "fresh again"
        );

        // Other CAs: checked at once, whatever the time.
        let both = [fixture("ca.crt"), fixture("other-ca.crt")].concat();
        assert_eq!(cas.reload(&[both]), Ok(true));
        assert_eq!(cas.recheck(Some(&client), &mut checked, later), Ok(()));
        assert_eq!(cas.reload(&[fixture("other-ca.crt")]), Ok(true));
        assert_eq!(
            cas.recheck(Some(&client), &mut checked, later),
            Err(Error::InvalidCertificate(CertificateError::UnknownIssuer))
        );
        assert_eq!(
            cas.recheck(None, &mut checked, later),
            Err(Error::NoCertificatesPresented)
        );
        // A broken file: no connection goes on.
        let mut checked = cas.checked_now(start);
        assert!(cas.fail().is_some());
        assert_eq!(
            cas.recheck(Some(&[der("other.crt")]), &mut checked, start),
            Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure
            ))
        );
    }
}
