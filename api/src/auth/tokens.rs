//! Platform access tokens (JWT, HS256) and rotating refresh tokens.
//!
//! Keys are derived from `MCPLATFORM_SECRET` with HKDF-SHA256 and a purpose label, so the
//! platform's keys and (later) the end users' keys never coincide and a token of one is never
//! valid for the other.

use crate::error::{ApiError, ErrorCode};
use argon2::password_hash::rand_core::{OsRng, RngCore};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hkdf::Hkdf;
use jsonwebtoken::{
    decode, encode, errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

const ISSUER: &str = "mcplatform";
const AUDIENCE: &str = "mcplatform-platform-api";
pub const ACCESS_TTL_SECS: i64 = 15 * 60;
pub const REFRESH_TTL_SECS: i64 = 30 * 24 * 3600;
const REFRESH_PREFIX: &str = "mcpr_";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub sub: Uuid,
    pub email: String,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
    pub typ: String,
}

pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

/// Length of a derived key: HMAC-SHA256's own block of output.
pub const KEY_LEN: usize = 32;

/// HKDF's salt for every key of the platform: the version of this derivation scheme.
const KDF_SALT: &[u8] = b"mcplatform key derivation v1";

/// HKDF refused the output length (it cannot for [`KEY_LEN`], far below its 255 × 32 limit).
#[derive(Debug, thiserror::Error)]
#[error("key derivation failed: {0}")]
pub struct KeyDerivationError(hkdf::InvalidLength);

/// Derives a purpose-bound key from the platform secret (HKDF-SHA256, RFC 5869): the purpose
/// is the `info`, so each purpose gets an independent key from the one secret.
pub fn derive_key(secret: &[u8], purpose: &str) -> Result<[u8; KEY_LEN], KeyDerivationError> {
    let mut key = [0u8; KEY_LEN];
    Hkdf::<Sha256>::new(Some(KDF_SALT), secret)
        .expand(purpose.as_bytes(), &mut key)
        .map_err(KeyDerivationError)?;
    Ok(key)
}

impl TokenKeys {
    pub fn from_secret(secret: &[u8]) -> Result<Self, KeyDerivationError> {
        let key = derive_key(secret, "platform access token")?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Ok(Self {
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            validation,
        })
    }

    /// Issues an access token; returns it and its lifetime in seconds.
    pub fn issue_access(
        &self,
        user_id: Uuid,
        email: &str,
        now: DateTime<Utc>,
    ) -> Result<(String, i64), ApiError> {
        let claims = AccessClaims {
            sub: user_id,
            email: email.to_owned(),
            iat: now.timestamp(),
            exp: now.timestamp() + ACCESS_TTL_SECS,
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            typ: "access".to_owned(),
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(ApiError::internal)?;
        Ok((token, ACCESS_TTL_SECS))
    }

    pub fn verify_access(&self, token: &str) -> Result<AccessClaims, ApiError> {
        match decode::<AccessClaims>(token, &self.decoding, &self.validation) {
            Ok(data) if data.claims.typ == "access" => Ok(data.claims),
            Ok(_) => Err(invalid_token()),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(ApiError::new(
                ErrorCode::TokenExpired,
                "the access token has expired; refresh it",
            )),
            Err(_) => Err(invalid_token()),
        }
    }
}

fn invalid_token() -> ApiError {
    ApiError::new(ErrorCode::InvalidToken, "the access token is not valid")
}

/// A new token (of a refresh family, or of an invitation): the string handed out, and the hash
/// that is stored.
pub struct NewRefreshToken {
    pub token: String,
    pub hash: String,
}

/// `mcpr_{family id}_{256 random bits}`: the family id routes the token to its stream; only
/// the hash of the whole token is kept.
pub fn new_refresh_token(family_id: Uuid) -> NewRefreshToken {
    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut secret);
    let token = format!(
        "{REFRESH_PREFIX}{}_{}",
        family_id.simple(),
        URL_SAFE_NO_PAD.encode(secret)
    );
    let hash = hash_refresh_token(&token);
    NewRefreshToken { token, hash }
}

pub fn hash_refresh_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    URL_SAFE_NO_PAD.encode(digest)
}

/// The family a presented refresh token claims to belong to, if it is well-formed.
pub fn refresh_family(token: &str) -> Option<Uuid> {
    let rest = token.strip_prefix(REFRESH_PREFIX)?;
    let (family, secret) = rest.split_once('_')?;
    if secret.len() != 43 {
        return None;
    }
    Uuid::parse_str(family).ok()
}

/// The prefix of invitation tokens (`mcpi_` and 256 random bits, base64url).
const INVITATION_PREFIX: &str = "mcpi_";

/// A new invitation token: the string shown to the inviter once, and the hash that is stored.
pub fn new_invitation_token() -> NewRefreshToken {
    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut secret);
    let token = format!("{INVITATION_PREFIX}{}", URL_SAFE_NO_PAD.encode(secret));
    let hash = hash_invitation_token(&token);
    NewRefreshToken { token, hash }
}

/// The stored form of an invitation token: its sha256, base64url. Any string hashes, so an
/// unknown or malformed token is refused exactly like a used one.
pub fn hash_invitation_token(token: &str) -> String {
    let digest = Sha256::digest(token.trim().as_bytes());
    URL_SAFE_NO_PAD.encode(digest)
}

/// 256 random bits, hex: a fresh `MCPLATFORM_SECRET` for development.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_tokens_round_trip_and_forgeries_fail() {
        let keys = TokenKeys::from_secret(b"secret one").unwrap();
        let other = TokenKeys::from_secret(b"secret two").unwrap();
        let id = Uuid::new_v4();
        let (token, _) = keys.issue_access(id, "a@b.co", Utc::now()).unwrap();
        assert_eq!(keys.verify_access(&token).unwrap().sub, id);
        assert!(other.verify_access(&token).is_err());
        let (old, _) = keys
            .issue_access(id, "a@b.co", Utc::now() - chrono::Duration::hours(1))
            .unwrap();
        assert_eq!(
            keys.verify_access(&old).map_err(|e| e.code()).err(),
            Some(ErrorCode::TokenExpired)
        );
    }

    #[test]
    fn each_purpose_gets_its_own_key_per_secret() {
        let access = derive_key(b"secret", "platform access token").unwrap();
        let state = derive_key(b"secret", "mcp request state").unwrap();
        assert_ne!(access, state);
        assert_eq!(
            access,
            derive_key(b"secret", "platform access token").unwrap()
        );
        assert_ne!(
            access,
            derive_key(b"other", "platform access token").unwrap()
        );
        // HKDF-SHA256 (RFC 5869) as computed independently (Python's hmac): a change of the
        // scheme would sign every issued token out, so it must be deliberate.
        let expected = "eff2c437d07046537d14c87d94a2202c606a80e8b91fa0a47d374eb21b0e47ff";
        let hex: String = access.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
    }

    #[test]
    fn refresh_tokens_name_their_family() {
        let family = Uuid::new_v4();
        let t = new_refresh_token(family);
        assert_eq!(refresh_family(&t.token), Some(family));
        assert_eq!(hash_refresh_token(&t.token), t.hash);
        assert_eq!(refresh_family("mcpr_nope"), None);
    }
}
