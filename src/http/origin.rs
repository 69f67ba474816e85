//! Which web origins may open the WebSocket. A page on another site must not be
//! able to join rooms with a visitor's browser.

/// `allowed` empty: the request's own host, and localhost on any port.
/// `["*"]`: any origin. Otherwise exact matches.
pub fn allowed(origin: Option<&str>, host: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else {
        // Not a browser: origins protect browsers' users, not servers.
        return true;
    };
    if allowed.iter().any(|a| a == "*") {
        return true;
    }
    let origin = origin.trim_end_matches('/');
    if !allowed.is_empty() {
        return allowed.iter().any(|a| a.trim_end_matches('/') == origin);
    }
    let Some(authority) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    if Some(authority) == host {
        return true;
    }
    let hostname = match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    matches!(hostname, "localhost" | "127.0.0.1" | "::1")
}

#[cfg(test)]
mod tests {
    use super::allowed;

    #[test]
    fn origins() {
        let none: Vec<String> = vec![];
        assert!(allowed(None, Some("h:8080"), &none));
        assert!(allowed(Some("http://h:8080"), Some("h:8080"), &none));
        assert!(allowed(
            Some("http://localhost:1234"),
            Some("h:8080"),
            &none
        ));
        assert!(allowed(Some("http://127.0.0.1"), Some("h:8080"), &none));
        assert!(allowed(Some("http://[::1]:9"), Some("h:8080"), &none));
        assert!(!allowed(Some("http://evil.example"), Some("h:8080"), &none));
        assert!(!allowed(
            Some("http://localhost.evil.example"),
            Some("h"),
            &none
        ));
        assert!(!allowed(Some("null"), Some("h"), &none));
        let list = vec!["https://meet.example.com".to_string()];
        assert!(allowed(Some("https://meet.example.com"), Some("h"), &list));
        assert!(!allowed(Some("http://localhost:1"), Some("h"), &list));
        assert!(allowed(Some("http://x"), Some("h"), &["*".to_string()]));
    }
}
