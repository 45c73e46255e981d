//! Third-party secrets at rest: what the platform must hold in the clear to use (a server's
//! tracking secrets, an identity provider's client secret, later the provider's tokens) is
//! sealed with ChaCha20-Poly1305 under a key of its own purpose, derived from the platform
//! secret with HKDF-SHA256 (the purpose is the `info`; the salt is the one every platform key
//! is derived with). The associated data binds a sealed value to its row (its owner's ids), so
//! a value copied to another row does not open.
//!
//! Sealed layout: the 12-byte nonce, then the ciphertext and its tag.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;
use std::fmt;

/// The salt of every key derived from the platform secret (the same as the REST edge's token
/// keys), so a purpose's key is the one it always was.
const KDF_SALT: &[u8] = b"mcplatform key derivation v1";

/// Length of a ChaCha20-Poly1305 nonce, stored before the ciphertext.
const NONCE_LEN: usize = 12;

/// What a sealed value is for; each purpose has its own key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Servers' tracking secrets (`tracking_secrets`).
    TrackingSecrets,
    /// Identity providers' client secrets (`identity_provider_secrets`).
    ProviderClientSecrets,
    /// Tokens an identity provider issued to the platform for an end user.
    ProviderTokens,
}

impl Purpose {
    /// The HKDF `info`. Never change one: values sealed under it would no longer open.
    pub const fn info(self) -> &'static str {
        match self {
            Purpose::TrackingSecrets => "tracking secrets at rest",
            Purpose::ProviderClientSecrets => "identity provider client secrets at rest",
            Purpose::ProviderTokens => "identity provider tokens at rest",
        }
    }
}

/// A sealed value could not be opened: the platform secret changed, or the row was altered.
#[derive(Debug, thiserror::Error)]
#[error("a sealed secret could not be opened (was the platform secret changed?)")]
pub struct OpenError;

/// The key derivation failed (only for an output length HKDF cannot give; 32 bytes it can).
#[derive(Debug, thiserror::Error)]
#[error("key derivation failed")]
pub struct DeriveError;

/// Derives the 32-byte key of `info` from the platform secret (HKDF-SHA256).
pub fn derive_key(platform_secret: &[u8], info: &str) -> Result<[u8; 32], DeriveError> {
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(Some(KDF_SALT), platform_secret)
        .expand(info.as_bytes(), &mut key)
        .map_err(|_| DeriveError)?;
    Ok(key)
}

/// Seals and opens the values of one purpose.
#[derive(Clone)]
pub struct Seal {
    cipher: ChaCha20Poly1305,
}

impl fmt::Debug for Seal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Seal(..)")
    }
}

impl Seal {
    /// `key`: 32 bytes for this purpose only.
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }

    /// The seal of `purpose`, keyed from the platform secret.
    pub fn derive(platform_secret: &[u8], purpose: Purpose) -> Result<Self, DeriveError> {
        derive_key(platform_secret, purpose.info()).map(Self::new)
    }

    /// The nonce followed by the ciphertext and its tag; `aad` binds it to its row.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let payload = Payload {
            msg: plaintext,
            aad,
        };
        // Encryption fails only past ChaCha20's message limit (256 GiB).
        let sealed = self.cipher.encrypt(&nonce, payload).unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < NONCE_LEN {
            return Err(OpenError);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let payload = Payload {
            msg: ciphertext,
            aad,
        };
        self.cipher
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| OpenError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_purpose_has_its_own_key_and_rows_do_not_swap() {
        let secret = b"platform-secret-0123456789";
        let clients =
            Seal::derive(secret, Purpose::ProviderClientSecrets).unwrap_or_else(|_| unreachable!());
        let tokens =
            Seal::derive(secret, Purpose::ProviderTokens).unwrap_or_else(|_| unreachable!());
        let sealed = clients.seal(b"row-1", b"client-secret-value");
        assert!(!sealed
            .windows(b"client-secret-value".len())
            .any(|w| w == b"client-secret-value"));
        assert_eq!(
            clients.open(b"row-1", &sealed).ok().as_deref(),
            Some(&b"client-secret-value"[..])
        );
        assert!(clients.open(b"row-2", &sealed).is_err());
        assert!(tokens.open(b"row-1", &sealed).is_err());
        let other = Seal::derive(b"another-platform-secret", Purpose::ProviderClientSecrets)
            .unwrap_or_else(|_| unreachable!());
        assert!(other.open(b"row-1", &sealed).is_err());
        assert!(clients.open(b"row-1", &sealed[..4]).is_err());
    }

    #[test]
    fn the_tracking_key_is_the_one_it_always_was() {
        // The REST edge derived it as HKDF-SHA256(salt "mcplatform key derivation v1",
        // info "tracking secrets at rest"): tracking secrets sealed before still open.
        let key = derive_key(b"s", Purpose::TrackingSecrets.info()).unwrap_or_default();
        let mut expected = [0u8; 32];
        let _ = Hkdf::<Sha256>::new(Some(b"mcplatform key derivation v1"), b"s")
            .expand(b"tracking secrets at rest", &mut expected);
        assert_eq!(key, expected);
    }
}
