//! What is wrong with a PEM file (the certificate chain, the key, the
//! client CAs), in fixed words that hold nothing read from it: shared by
//! `crate::files::tls` and `crate::files::client_cert`.

use rustls::pki_types::pem;

/// What is wrong with a PEM file, in fixed words that hold nothing read
/// from it; `expected` names the section that was looked for.
///
/// Never the text of rustls-pki-types' `pem::Error` (1.16.0 `src/pem.rs`,
/// `read` and `impl Display for Error`): `MissingSectionEnd` carries the
/// label of the section left open and `IllegalSectionStart` the whole
/// BEGIN line, printed as lists of bytes, and a PEM that lost its line
/// breaks (a key passed through a variable or a template) is one line, so
/// that label is the whole key; `Base64Decode` names the byte it could not
/// decode. Used for the certificate chain, the key and the client CA file
/// (`crate::files::client_cert`).
pub fn pem_problem(e: &pem::Error, expected: &str) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a -----BEGIN line has no matching -----END line \
            (were its line breaks lost, putting the whole file on one line?)"
            .to_string(),
        pem::Error::IllegalSectionStart { .. } => "a line starting with -----BEGIN is not a \
            well-formed BEGIN line (it must end with five dashes, on a line of its own)"
            .to_string(),
        pem::Error::Base64Decode(_) => {
            "the text between a -----BEGIN and an -----END line is not valid base64".to_string()
        }
        pem::Error::SectionTooLarge => "a PEM section is larger than 256 MB".to_string(),
        pem::Error::NoItemsFound => format!("no PEM {expected} in it"),
        pem::Error::Io(_) => "it could not be read".to_string(),
        // A variant added later: its text is not known to hold nothing of
        // the file.
        _ => "it is not a well-formed PEM file".to_string(),
    }
}

/// PEM files broken the ways that put their contents into a parser's
/// error, and a search for any part of a secret in a text, for the tests
/// here and in `crate::files::client_cert`.
#[cfg(test)]
pub(crate) mod broken_pem {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivateKeyDer;

    /// `pem` with its line breaks lost (through a variable or a template):
    /// `-----BEGIN X----- MIG... -----END X-----` on one line.
    pub fn one_line(pem: &[u8]) -> Vec<u8> {
        let text = String::from_utf8_lossy(pem);
        let mut one = text.split_whitespace().collect::<Vec<_>>().join(" ");
        one.push('\n');
        one.into_bytes()
    }

    /// `pem` whose BEGIN line runs on into the base64 (one line break
    /// lost): an illegal section start.
    pub fn begin_run_on(pem: &[u8]) -> Vec<u8> {
        let text = String::from_utf8_lossy(pem);
        text.replacen("-----\n", "----- ", 1).into_bytes()
    }

    /// `pem` with a character base64 does not have in its first line of
    /// base64.
    pub fn bad_base64(pem: &[u8]) -> Vec<u8> {
        let text = String::from_utf8_lossy(pem);
        text.replacen("-----\n", "-----\n%", 1).into_bytes()
    }

    /// Every broken form of `pem`.
    pub fn all(pem: &[u8]) -> [Vec<u8>; 3] {
        [one_line(pem), begin_run_on(pem), bad_base64(pem)]
    }

    /// Panics, showing it, if `text` holds any part of the PEM file `pem`
    /// (its base64 text, 8 characters at a time) or of what it encodes, in
    /// any form a parser's error shows bytes in: as they are, as lists of
    /// decimal bytes (`[77, 73, 71, ...]`, the file's bytes or the DER's),
    /// or in hex, 4 bytes at a time.
    pub fn assert_holds_nothing_of(text: &str, pem: &[u8]) {
        let body: String = String::from_utf8_lossy(pem)
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let der = PrivateKeyDer::from_pem_slice(pem)
            .map(|k| k.secret_der().to_vec())
            .or_else(|_| rustls::pki_types::CertificateDer::from_pem_slice(pem).map(|c| c.to_vec()))
            .expect("a PEM key or certificate");
        let mut forms: Vec<String> = body
            .as_bytes()
            .windows(8)
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        for bytes in [pem, &der[..]] {
            for w in bytes.windows(4) {
                forms.push(format!("{}, {}, {}, {}", w[0], w[1], w[2], w[3]));
                forms.push(w.iter().map(|b| format!("{b:02x}")).collect());
            }
        }
        for form in forms {
            assert!(!text.contains(&form), "{form:?} of the file in: {text}");
        }
    }
}
