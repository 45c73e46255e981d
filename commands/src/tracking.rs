//! Signed tracking ids: `{id}.{signature}`, the signature being base64url (no padding) of
//! HMAC-SHA256(secret, id), minted by the customer's backend with a per-server tracking secret.
//!
//! The platform must hold the secret itself to verify a signature, so it cannot keep only a
//! hash: a secret is sealed (ChaCha20-Poly1305, with a key derived from the platform secret and
//! the server's id as associated data; see `crate::sealing`) in the write-side table `tracking_secrets`, and opened
//! by the MCP edge when it loads the server. Events only say that a secret with some id and
//! prefix was created or revoked.

use crate::sealing::{Purpose, Seal};
use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::OsRng;
use domain::end_user::TrackingId;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use uuid::Uuid;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

type HmacSha256 = Hmac<Sha256>;

/// What every tracking secret starts with, so a leaked one is recognisable.
pub const SECRET_PREFIX: &str = "mcpts_";

/// Length of the non-secret prefix shown in lists: `mcpts_` and 6 of its 43 random characters.
const SHOWN_PREFIX_LEN: usize = SECRET_PREFIX.len() + 6;

/// Length of a signature: 32 bytes of HMAC-SHA256 in unpadded base64url.
pub const SIGNATURE_LEN: usize = 43;

/// A new tracking secret: `mcpts_` and 256 random bits in base64url. The HMAC key is the
/// secret's text itself (its UTF-8 bytes), so a backend uses it as it was shown.
pub struct NewTrackingSecret {
    pub secret: String,
    /// The part shown in lists and events: not enough to sign anything.
    pub prefix: String,
}

impl fmt::Debug for NewTrackingSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewTrackingSecret")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

pub fn new_secret() -> NewTrackingSecret {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let secret = format!("{SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let prefix = secret[..SHOWN_PREFIX_LEN].to_owned();
    NewTrackingSecret { secret, prefix }
}

/// The signature of `id` under `secret`, as a backend computes it.
pub fn sign(secret: &[u8], id: &str) -> String {
    URL_SAFE_NO_PAD.encode(mac(secret, id).finalize().into_bytes())
}

fn mac(secret: &[u8], id: &str) -> HmacSha256 {
    // HMAC takes a key of any length.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(id.as_bytes());
    mac
}

/// Whether `signature` (base64url, no padding) is `id`'s under `secret`, compared in constant
/// time.
pub fn verify(secret: &[u8], id: &str, signature: &str) -> bool {
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(signature) else {
        return false;
    };
    mac(secret, id).verify_slice(&bytes).is_ok()
}

/// `{id}.{signature}` split at its last dot, if what follows has a signature's form.
pub fn split_signed(raw: &str) -> Option<(&str, &str)> {
    let (id, signature) = raw.rsplit_once('.')?;
    let form = signature.len() == SIGNATURE_LEN
        && signature
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    (form && !id.is_empty()).then_some((id, signature))
}

/// An active tracking secret of a server, opened: what the MCP edge verifies with.
#[derive(Clone)]
pub struct TrackingKey {
    pub secret_id: Uuid,
    secret: Vec<u8>,
}

impl TrackingKey {
    pub fn new(secret_id: Uuid, secret: impl Into<Vec<u8>>) -> Self {
        Self {
            secret_id,
            secret: secret.into(),
        }
    }
}

impl fmt::Debug for TrackingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrackingKey")
            .field("secret_id", &self.secret_id)
            .finish_non_exhaustive()
    }
}

impl PartialEq for TrackingKey {
    fn eq(&self, other: &Self) -> bool {
        self.secret_id == other.secret_id
    }
}

/// What a tracking id in a URL turns out to be, for a server.
#[derive(Debug, Clone, PartialEq)]
pub enum Presented {
    /// The end user it names: the bare id of a signed one.
    Id(TrackingId),
    /// Not a tracking id at all (characters or length).
    Malformed,
    /// The server requires signed ids and this one carries no signature.
    Unsigned,
    /// The server requires signed ids and the signature verifies under none of its secrets.
    BadSignature,
}

/// Longest raw tracking id looked at: an id of 128 characters and its signature.
const MAX_RAW_LEN: usize = 128 + 1 + SIGNATURE_LEN;

/// Reads a tracking id as a server with these settings takes it. A signature that verifies
/// under one of `keys` is stripped, so an end user keeps one identity whether or not their id
/// is signed, and across rotations. When signatures are `required`, an id without one, or with
/// one that verifies under no key, is refused; otherwise the id is taken literally.
pub fn check(raw: &str, required: bool, keys: &[TrackingKey]) -> Presented {
    if raw.len() > MAX_RAW_LEN {
        return Presented::Malformed;
    }
    let signed = split_signed(raw);
    if let Some((id, signature)) = signed {
        // Every key is tried (no early exit), so timing says nothing about which one matched.
        let verified = keys
            .iter()
            .fold(false, |ok, key| verify(&key.secret, id, signature) | ok);
        if verified {
            return TrackingId::parse(id).map_or(Presented::Malformed, Presented::Id);
        }
    }
    match (TrackingId::parse(raw), required) {
        (None, _) => Presented::Malformed,
        (Some(id), false) => Presented::Id(id),
        (Some(_), true) if signed.is_some() => Presented::BadSignature,
        (Some(_), true) => Presented::Unsigned,
    }
}

/// Seals tracking secrets at rest (`crate::sealing`, purpose `TrackingSecrets`), bound to the
/// server (its id is the associated data, so a sealed secret copied to another server's row
/// does not open).
#[derive(Clone, Debug)]
pub struct TrackingSeal {
    seal: Seal,
}

pub use crate::sealing::OpenError;

impl TrackingSeal {
    /// `key`: 32 bytes derived from the platform secret for this purpose only.
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            seal: Seal::new(key),
        }
    }

    /// The tracking seal keyed from the platform secret.
    pub fn derive(platform_secret: &[u8]) -> Result<Self, crate::sealing::DeriveError> {
        Seal::derive(platform_secret, Purpose::TrackingSecrets).map(|seal| Self { seal })
    }

    /// The nonce followed by the ciphertext and its tag.
    pub fn seal(&self, server_id: Uuid, secret: &str) -> Vec<u8> {
        self.seal.seal(server_id.as_bytes(), secret.as_bytes())
    }

    pub fn open(&self, server_id: Uuid, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        self.seal.open(server_id.as_bytes(), sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_base64url_of_hmac_sha256_as_python_computes_it() {
        // python3 -c "import hmac,hashlib,base64; print(base64.urlsafe_b64encode(hmac.new(
        //   b'mcpts_example', b'a-user-1', hashlib.sha256).digest()).rstrip(b'=').decode())"
        let signature = sign(b"mcpts_example", "a-user-1");
        assert_eq!(signature, EXPECTED);
        assert_eq!(signature.len(), SIGNATURE_LEN);
        assert!(verify(b"mcpts_example", "a-user-1", &signature));
        assert!(!verify(b"mcpts_other", "a-user-1", &signature));
        assert!(!verify(b"mcpts_example", "a-user-2", &signature));
        assert!(!verify(b"mcpts_example", "a-user-1", "not base64!"));
    }

    const EXPECTED: &str = "SGIB-uyFdFqiCquWQWBysUIQep7i1vI82uJ3ZvwFtRY";

    #[test]
    fn signed_ids_are_stripped_and_required_ones_checked() {
        let one = TrackingKey::new(Uuid::from_u128(1), "mcpts_one");
        let two = TrackingKey::new(Uuid::from_u128(2), "mcpts_two");
        let keys = [one, two];
        let bare = |s: &str| Presented::Id(TrackingId::parse(s).unwrap_or_else(|| unreachable!()));
        let by_one = format!("alice.{}", sign(b"mcpts_one", "alice"));
        let by_two = format!("alice.{}", sign(b"mcpts_two", "alice"));
        let by_other = format!("alice.{}", sign(b"mcpts_three", "alice"));
        for required in [true, false] {
            assert_eq!(check(&by_one, required, &keys), bare("alice"));
            assert_eq!(check(&by_two, required, &keys), bare("alice"));
        }
        assert_eq!(check(&by_other, true, &keys), Presented::BadSignature);
        assert_eq!(check("alice", true, &keys), Presented::Unsigned);
        assert_eq!(check("a.b", true, &keys), Presented::Unsigned);
        assert_eq!(check("al ice", true, &keys), Presented::Malformed);
        // Not required: taken literally unless a signature verifies.
        assert_eq!(check("alice", false, &keys), bare("alice"));
        assert_eq!(check(&by_other, false, &keys), bare(&by_other));
        assert_eq!(check(&by_one, false, &[]), bare(&by_one));
        // Revoked (no longer among the keys): refused.
        assert_eq!(check(&by_one, true, &keys[1..]), Presented::BadSignature);
        // A signature over another id does not carry over.
        let moved = format!("bob.{}", sign(b"mcpts_one", "alice"));
        assert_eq!(check(&moved, true, &keys), Presented::BadSignature);
        assert_eq!(check(&"a".repeat(300), false, &keys), Presented::Malformed);
    }

    #[test]
    fn sealed_secrets_open_only_for_their_server_and_key() {
        let seal = TrackingSeal::new([7; 32]);
        let server = Uuid::from_u128(1);
        let fresh = new_secret();
        assert!(fresh.secret.starts_with(SECRET_PREFIX));
        assert_eq!(fresh.secret.len(), SECRET_PREFIX.len() + 43);
        assert!(fresh.secret.starts_with(&fresh.prefix));
        assert!(!format!("{fresh:?}").contains(&fresh.secret));
        let sealed = seal.seal(server, &fresh.secret);
        assert!(!sealed
            .windows(fresh.secret.len())
            .any(|w| w == fresh.secret.as_bytes()));
        assert_eq!(
            seal.open(server, &sealed).ok(),
            Some(fresh.secret.clone().into_bytes())
        );
        assert!(seal.open(Uuid::from_u128(2), &sealed).is_err());
        assert!(TrackingSeal::new([8; 32]).open(server, &sealed).is_err());
        assert!(seal.open(server, &sealed[..5]).is_err());
    }
}
