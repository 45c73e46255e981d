//! Platform authentication: passwords, tokens, login rate limits.

pub mod passwords;
pub mod rate_limit;
pub mod tokens;
