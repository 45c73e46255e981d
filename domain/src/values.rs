//! Validated value types. Built from untrusted input at the edge with `parse`; past the edge a
//! value of one of these types is always valid.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a value was refused. The edge maps it to a 422 naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("must be 1 to 63 characters of a-z, 0-9 and '-', not starting or ending with '-'")]
    SlugFormat,
    #[error("is reserved")]
    SlugReserved,
    #[error(
        "must not have '--' as its 3rd and 4th characters: that marks an internationalized \
         (punycode, 'xn--') or other reserved DNS label"
    )]
    SlugReservedLdh,
    #[error("is not a valid email address")]
    Email,
    #[error("must be between {min} and {max} characters")]
    Length { min: usize, max: usize },
    #[error("is too weak: use at least 10 characters, not a common password, with some variety")]
    WeakPassword,
    #[error("must be one of: {0}")]
    OneOf(&'static str),
}

/// Names that can never be a server or org slug: they are our own hosts or easily confused with
/// them.
pub const RESERVED_SLUGS: &[&str] = &[
    "www",
    "api",
    "admin",
    "app",
    "apps",
    "auth",
    "oauth",
    "login",
    "logout",
    "signup",
    "mcp",
    "mail",
    "smtp",
    "imap",
    "ftp",
    "docs",
    "status",
    "dashboard",
    "static",
    "assets",
    "cdn",
    "help",
    "internal",
    "system",
    "root",
    "localhost",
    "platform",
    "mcplatform",
    "s",
    "t",
];

/// A DNS label used as org or server slug: `{slug}.{base domain}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Slug(String);

impl Slug {
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        let s = input.trim();
        let valid_chars = s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if s.is_empty() || s.len() > 63 || !valid_chars || s.starts_with('-') || s.ends_with('-') {
            return Err(ValueError::SlugFormat);
        }
        // `xn--` labels are punycode: shown by a browser as another, possibly look-alike, name
        // (`xn--pple-43d` is "аpple" with a Cyrillic "а"). IDNA reserves every label with
        // "--" in 3rd and 4th place (RFC 5891 2.3.1) for such encodings, so all are refused.
        if s.get(2..4) == Some("--") {
            return Err(ValueError::SlugReservedLdh);
        }
        // A slug shaped like a UUID could shadow an id in `{org}` / `{server}` path segments.
        if RESERVED_SLUGS.contains(&s) || uuid::Uuid::parse_str(s).is_ok() {
            return Err(ValueError::SlugReserved);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An email address, trimmed and lower-cased so it can key uniqueness.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        let s = input.trim().to_lowercase();
        let Some((local, domain)) = s.split_once('@') else {
            return Err(ValueError::Email);
        };
        let ok = !local.is_empty()
            && local.len() <= 64
            && s.len() <= 254
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && !s.chars().any(|c| c.is_whitespace() || c.is_control())
            && !domain.contains('@');
        if !ok {
            return Err(ValueError::Email);
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A display name: trimmed, 1 to 200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        let s = input.trim();
        let len = s.chars().count();
        if !(1..=200).contains(&len) || s.chars().any(char::is_control) {
            return Err(ValueError::Length { min: 1, max: 200 });
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

const COMMON_PASSWORDS: &[&str] = &[
    "password",
    "password1",
    "password12",
    "password123",
    "1234567890",
    "12345678910",
    "qwertyuiop",
    "letmein123",
    "iloveyou12",
    "administrator",
    "welcome123",
    "changeme12",
    "passw0rd123",
    "qwerty1234",
    "abcdefghij",
    "0123456789",
];

/// Checks a new password against the policy: 10 to 256 characters, at least 5 distinct
/// characters, not a well-known password. Only the hash is ever stored.
pub fn check_password_strength(password: &str) -> Result<(), ValueError> {
    let len = password.chars().count();
    if len > 256 {
        return Err(ValueError::Length { min: 10, max: 256 });
    }
    let mut distinct: Vec<char> = password.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if len < 10
        || distinct.len() < 5
        || COMMON_PASSWORDS.contains(&password.to_lowercase().as_str())
    {
        return Err(ValueError::WeakPassword);
    }
    Ok(())
}

/// A member's role in an organization.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    PartialOrd,
    Ord,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        match input {
            "owner" => Ok(Role::Owner),
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            _ => Err(ValueError::OneOf("owner, admin, member")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    /// Owners and admins manage members and servers.
    pub fn can_manage(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }

    /// Whether events and audit entries show this role where they came from: the client ip
    /// and user agent of end users and members. Personal data, so owners and admins only.
    pub fn sees_client_details(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }
}

/// How a hosted MCP server identifies its end users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Anonymous calls accepted; a tracking id identifies a user when present.
    #[default]
    None,
    /// A tracking id in the URL is required.
    Tracking,
    /// End users sign in through the customer's OAuth provider.
    Oauth,
}

impl AuthMode {
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        match input {
            "none" => Ok(AuthMode::None),
            "tracking" => Ok(AuthMode::Tracking),
            "oauth" => Ok(AuthMode::Oauth),
            _ => Err(ValueError::OneOf("none, tracking, oauth")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::None => "none",
            AuthMode::Tracking => "tracking",
            AuthMode::Oauth => "oauth",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_dns_labels_and_not_reserved() {
        assert!(Slug::parse("acme").is_ok());
        assert!(Slug::parse("acme-2").is_ok());
        assert_eq!(Slug::parse("Acme"), Err(ValueError::SlugFormat));
        assert_eq!(Slug::parse("-acme"), Err(ValueError::SlugFormat));
        assert_eq!(Slug::parse("acme-"), Err(ValueError::SlugFormat));
        assert_eq!(Slug::parse("ac_me"), Err(ValueError::SlugFormat));
        assert_eq!(Slug::parse(""), Err(ValueError::SlugFormat));
        assert_eq!(Slug::parse(&"a".repeat(64)), Err(ValueError::SlugFormat));
        assert_eq!(Slug::parse("www"), Err(ValueError::SlugReserved));
        for punycode in ["xn--pple-43d", "xn--80ak6aa92e", "ab--c", "a1--b"] {
            assert_eq!(
                Slug::parse(punycode),
                Err(ValueError::SlugReservedLdh),
                "{punycode}"
            );
        }
        assert!(Slug::parse("a--b").is_ok() && Slug::parse("abc--d").is_ok());
        assert_eq!(Slug::parse("api"), Err(ValueError::SlugReserved));
        assert_eq!(Slug::parse("admin"), Err(ValueError::SlugReserved));
        assert_eq!(
            Slug::parse("67e55044-10b1-426f-9247-bb680e5fe0c8"),
            Err(ValueError::SlugReserved)
        );
    }

    #[test]
    fn emails_are_normalized() {
        assert_eq!(
            Email::parse(" Ada@Example.COM ").map(|e| e.as_str().to_owned()),
            Ok("ada@example.com".to_owned())
        );
        assert_eq!(Email::parse("nope"), Err(ValueError::Email));
        assert_eq!(Email::parse("a@b"), Err(ValueError::Email));
        assert_eq!(Email::parse("a b@c.de"), Err(ValueError::Email));
    }

    #[test]
    fn weak_passwords_are_refused() {
        assert_eq!(
            check_password_strength("short"),
            Err(ValueError::WeakPassword)
        );
        assert_eq!(
            check_password_strength("aaaaaaaaaaaa"),
            Err(ValueError::WeakPassword)
        );
        assert_eq!(
            check_password_strength("Password123"),
            Err(ValueError::WeakPassword)
        );
        assert!(check_password_strength("correct horse battery").is_ok());
    }

    #[test]
    fn roles_and_modes_parse() {
        assert_eq!(Role::parse("admin"), Ok(Role::Admin));
        assert!(Role::parse("boss").is_err());
        assert_eq!(AuthMode::parse("tracking"), Ok(AuthMode::Tracking));
        assert!(AuthMode::parse("magic").is_err());
    }
}

/// The id of an organization. Read-model queries of org data take one, so a query without an
/// org cannot be written by accident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrgId(pub uuid::Uuid);

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
