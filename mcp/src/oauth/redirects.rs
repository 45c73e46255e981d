//! Redirect URIs: which a registration may hold (each judged on its own), and when one an
//! authorization request names matches a registered one (exactly, except a loopback redirect's
//! port, RFC 8252 §7.3).

/// Schemes no redirect may use: they run code or read local data in the browser.
const FORBIDDEN_SCHEMES: &[&str] = &["javascript", "data", "file", "vbscript", "about", "blob"];

/// Whether a host is a loopback address (RFC 8252 §7.3; `localhost` too, §8.3 notwithstanding,
/// since clients register it).
fn is_loopback(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "[::1]" | "::1" | "localhost")
        || host.strip_prefix("127.").is_some_and(|rest| {
            rest.split('.').count() == 3 && rest.split('.').all(|p| p.parse::<u8>().is_ok())
        })
}

/// Why a redirect URI is refused, if it is.
pub fn judge(uri: &str) -> Result<(), &'static str> {
    let url = url::Url::parse(uri).map_err(|_| "not an absolute URI")?;
    if url.fragment().is_some() {
        return Err("a redirect URI has no fragment (RFC 6749 §3.1.2)");
    }
    match url.scheme() {
        "https" => {
            if url.host_str().is_none_or(str::is_empty) {
                return Err("an https redirect URI names a host");
            }
            Ok(())
        }
        "http" => {
            if url.host_str().is_some_and(is_loopback) {
                Ok(())
            } else {
                Err("plain http is allowed only on a loopback address")
            }
        }
        scheme if FORBIDDEN_SCHEMES.contains(&scheme) => Err("this scheme is not allowed"),
        // A native app's private-use scheme (RFC 8252 §7.1), e.g. `cursor://…`.
        _ => Ok(()),
    }
}

/// Whether the redirect URI an authorization request names is the registered one: the same
/// string, or, for an http loopback redirect, the same but for the port.
pub fn matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let (Ok(a), Ok(b)) = (url::Url::parse(registered), url::Url::parse(requested)) else {
        return false;
    };
    if a.scheme() != "http" || b.scheme() != "http" || !a.host_str().is_some_and(is_loopback) {
        return false;
    }
    let without_port = |u: &url::Url| {
        let mut u = u.clone();
        let _ = u.set_port(None);
        u.to_string()
    };
    // The serialized forms must agree apart from the port: no normalizing of the path.
    let strip = |s: &str, u: &url::Url| match u.port() {
        Some(port) => s.replacen(&format!(":{port}"), "", 1),
        None => s.to_owned(),
    };
    a.host_str() == b.host_str()
        && without_port(&a) == without_port(&b)
        && strip(registered, &a) == strip(requested, &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_redirect_is_judged_on_its_own() {
        assert!(judge("https://app.example/cb").is_ok());
        assert!(judge("http://127.0.0.1:33418/callback").is_ok());
        assert!(judge("http://localhost/cb").is_ok());
        assert!(judge("http://[::1]:9/cb").is_ok());
        assert!(judge("cursor://anysphere.cursor-retrieval/oauth/callback").is_ok());
        assert!(judge("http://app.example/cb").is_err());
        assert!(judge("https://app.example/cb#frag").is_err());
        assert!(judge("javascript:alert(1)").is_err());
        assert!(judge("/relative").is_err());
    }

    #[test]
    fn loopback_matches_on_any_port_and_nothing_else_differs() {
        assert!(matches("http://127.0.0.1/cb", "http://127.0.0.1:5555/cb"));
        assert!(matches("http://127.0.0.1:1/cb", "http://127.0.0.1:5555/cb"));
        assert!(!matches("http://127.0.0.1/cb", "http://127.0.0.1:5555/cb/"));
        assert!(!matches("http://127.0.0.1/cb", "http://localhost:5555/cb"));
        assert!(matches("https://app.example/cb", "https://app.example/cb"));
        assert!(!matches(
            "https://app.example/cb",
            "https://app.example/cb/"
        ));
        assert!(!matches("https://app.example/cb", "https://app.example/cc"));
        assert!(!matches(
            "https://app.example:1/cb",
            "https://app.example:2/cb"
        ));
    }
}
