//! `--cloud-ssh-private`: the public key to import, derived from the private key.
//!
//! Accepted: unencrypted RSA or Ed25519 keys, as OpenSSH (`BEGIN OPENSSH PRIVATE KEY`),
//! PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8 (`BEGIN PRIVATE KEY`). These are the key types
//! EC2 `ImportKeyPair` and Compute Engine's `ssh-keys` metadata take. Error messages never
//! quote the key.

use crate::CloudError;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::Engine;

fn bad(reason: impl Into<String>) -> CloudError {
    CloudError::SshKey {
        reason: reason.into(),
    }
}

/// The OpenSSH public key line (`ssh-rsa AAAA...` or `ssh-ed25519 AAAA...`) of `private`.
pub fn public_key_openssh(private: &str) -> Result<String, CloudError> {
    let (label, der) = pem_decode(private)?;
    let (kind, blob) = match label.as_str() {
        "OPENSSH PRIVATE KEY" => openssh_public_blob(&der)?,
        "RSA PRIVATE KEY" => {
            let key = RsaKeyPair::from_der(&der).map_err(|e| {
                bad(format!(
                    "not a usable RSA key ({e}); RSA keys need 2048 to 8192 bits"
                ))
            })?;
            rsa_blob(&key)
        }
        "PRIVATE KEY" => {
            if let Ok(key) = RsaKeyPair::from_pkcs8(&der) {
                rsa_blob(&key)
            } else if let Ok(key) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der) {
                ed25519_blob(key.public_key().as_ref())
            } else {
                return Err(bad(
                    "the PKCS#8 key is neither a usable RSA key (2048 to 8192 bits) nor an Ed25519 key",
                ));
            }
        }
        "ENCRYPTED PRIVATE KEY" => {
            return Err(bad(
                "encrypted keys are not supported; pass an unencrypted key",
            ))
        }
        "EC PRIVATE KEY" | "DSA PRIVATE KEY" => {
            return Err(bad(format!(
                "{label} keys are not supported by EC2 key pairs"
            )))
        }
        other => return Err(bad(format!("unexpected PEM block {other:?}"))),
    };
    Ok(format!(
        "{kind} {}",
        base64::engine::general_purpose::STANDARD.encode(blob)
    ))
}

/// The label and decoded body of the first PEM block.
fn pem_decode(text: &str) -> Result<(String, Vec<u8>), CloudError> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().ok_or_else(|| bad("the key is empty"))?;
    let label = first
        .strip_prefix("-----BEGIN ")
        .and_then(|l| l.strip_suffix("-----"))
        .ok_or_else(|| bad("the key does not start with a -----BEGIN ... PRIVATE KEY----- line"))?
        .to_string();
    let end = format!("-----END {label}-----");
    let mut body = String::new();
    let mut ended = false;
    for line in lines {
        if line == end {
            ended = true;
            break;
        }
        if line.contains(':') {
            // RFC 1421 headers (Proc-Type: 4,ENCRYPTED / DEK-Info: ...).
            return Err(bad(
                "encrypted keys are not supported; pass an unencrypted key",
            ));
        }
        body.push_str(line);
    }
    if !ended {
        return Err(bad(format!("the key has no -----END {label}----- line")));
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .map_err(|_| bad("the key body is not valid base64"))?;
    if der.is_empty() {
        return Err(bad("the key body is empty"));
    }
    Ok((label, der))
}

/// A reader of the SSH wire format (RFC 4251: uint32, string).
struct Wire<'a>(&'a [u8]);

impl<'a> Wire<'a> {
    fn u32(&mut self) -> Result<u32, CloudError> {
        if self.0.len() < 4 {
            return Err(bad("the OpenSSH key is truncated"));
        }
        let (head, rest) = self.0.split_at(4);
        self.0 = rest;
        Ok(u32::from_be_bytes([head[0], head[1], head[2], head[3]]))
    }

    fn string(&mut self) -> Result<&'a [u8], CloudError> {
        let n = self.u32()? as usize;
        if self.0.len() < n {
            return Err(bad("the OpenSSH key is truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
}

const OPENSSH_MAGIC: &[u8] = b"openssh-key-v1\0";

fn openssh_public_blob(data: &[u8]) -> Result<(&'static str, Vec<u8>), CloudError> {
    let rest = data
        .strip_prefix(OPENSSH_MAGIC)
        .ok_or_else(|| bad("not an OpenSSH private key (bad magic)"))?;
    let mut w = Wire(rest);
    let cipher = w.string()?;
    let _kdf = w.string()?;
    let _kdf_options = w.string()?;
    if w.u32()? != 1 {
        return Err(bad("the OpenSSH file must hold exactly one key"));
    }
    let public = w.string()?;
    let private = w.string()?;
    if cipher != b"none" {
        return Err(bad(
            "encrypted keys are not supported; pass an unencrypted key",
        ));
    }
    let kind = match Wire(public).string()? {
        b"ssh-rsa" => "ssh-rsa",
        b"ssh-ed25519" => "ssh-ed25519",
        other => {
            return Err(bad(format!(
                "{} keys are not supported by EC2 key pairs; use RSA or Ed25519",
                String::from_utf8_lossy(other)
            )))
        }
    };
    // The private section starts with two equal check integers, then the same key type.
    let mut p = Wire(private);
    let (c1, c2) = (p.u32()?, p.u32()?);
    if c1 != c2 {
        return Err(bad(
            "the OpenSSH private section is corrupt (check integers differ)",
        ));
    }
    if p.string()? != kind.as_bytes() {
        return Err(bad(
            "the OpenSSH private section does not match its public key",
        ));
    }
    let mut pw = Wire(public);
    pw.string()?;
    match kind {
        "ssh-ed25519" => {
            let pk = pw.string()?;
            if pk.len() != 32 {
                return Err(bad("the Ed25519 public key is not 32 bytes"));
            }
        }
        _ => {
            let e = pw.string()?;
            let n = pw.string()?;
            if e.is_empty() || n.len() < 256 {
                return Err(bad("RSA keys need at least 2048 bits"));
            }
        }
    }
    Ok((kind, public.to_vec()))
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

fn put_mpint(out: &mut Vec<u8>, big_endian: &[u8]) {
    let trimmed: &[u8] = {
        let start = big_endian
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(big_endian.len());
        &big_endian[start..]
    };
    if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v = Vec::with_capacity(trimmed.len() + 1);
        v.push(0);
        v.extend_from_slice(trimmed);
        put_string(out, &v);
    } else {
        put_string(out, trimmed);
    }
}

fn rsa_blob(key: &RsaKeyPair) -> (&'static str, Vec<u8>) {
    let public = key.public_key();
    let mut blob = Vec::new();
    put_string(&mut blob, b"ssh-rsa");
    put_mpint(
        &mut blob,
        public.exponent().big_endian_without_leading_zero(),
    );
    put_mpint(
        &mut blob,
        public.modulus().big_endian_without_leading_zero(),
    );
    ("ssh-rsa", blob)
}

fn ed25519_blob(public: &[u8]) -> (&'static str, Vec<u8>) {
    let mut blob = Vec::new();
    put_string(&mut blob, b"ssh-ed25519");
    put_string(&mut blob, public);
    ("ssh-ed25519", blob)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The `ssh-keygen -y` line without its comment.
    fn expected(name: &str) -> String {
        let line = fixture(&format!("{name}.pub"));
        let mut parts = line.split_whitespace();
        format!("{} {}", parts.next().unwrap(), parts.next().unwrap())
    }

    #[test]
    fn every_supported_format_gives_the_ssh_keygen_public_key() {
        for name in [
            "ed25519_openssh",
            "rsa_openssh",
            "rsa_pkcs1.pem",
            "rsa_pkcs8.pem",
            "ed25519_pkcs8.pem",
        ] {
            let got = public_key_openssh(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got, expected(name), "{name}");
        }
    }

    #[test]
    fn malformed_keys_are_rejected_without_quoting_them() {
        let good = fixture("ed25519_openssh");
        let body_start = good.find('\n').unwrap() + 1;
        let mut corrupt = good.clone();
        // Overwrite a length field: base64 stays valid, the wire format not.
        corrupt.replace_range(body_start + 20..body_start + 24, "////");
        let cases = [
            "".to_string(),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPp1leRACRdEFaZZ7nSfvBlyP9VTQOr9BL8+VeE+y1DR".into(),
            "-----BEGIN OPENSSH PRIVATE KEY-----\nnot base64 !!\n-----END OPENSSH PRIVATE KEY-----".into(),
            "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n".into(),
            "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAK\n-----END RSA PRIVATE KEY-----".into(),
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n-----END PRIVATE KEY-----".into(),
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----".into(),
            "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----".into(),
            corrupt,
        ];
        for case in cases {
            let e = public_key_openssh(&case).unwrap_err();
            assert!(matches!(e, CloudError::SshKey { .. }), "{e}");
            let text = e.to_string();
            for line in case
                .lines()
                .filter(|l| !l.starts_with("-----") && l.len() >= 8)
            {
                assert!(!text.contains(line), "{text} quotes the key");
            }
        }
    }

    #[test]
    fn mpint_gets_a_leading_zero_when_the_high_bit_is_set() {
        let mut v = Vec::new();
        put_mpint(&mut v, &[0x00, 0x80, 0x01]);
        assert_eq!(v, [0, 0, 0, 3, 0, 0x80, 0x01]);
        let mut v = Vec::new();
        put_mpint(&mut v, &[0x01, 0x00, 0x01]);
        assert_eq!(v, [0, 0, 0, 3, 1, 0, 1]);
    }
}
