//! Credentials written into URLs (`https://user:password@host`): split off before a URL is
//! stored, so that no log line, error message, `/health` answer or printed configuration can
//! carry them.
//!
//! The split is textual (RFC 3986: the userinfo is what precedes the last `@` of the
//! authority), so it works on any text an operator may have written, including text that is not
//! a valid URL: exactly what an error message about a bad URL quotes.

use std::{borrow::Cow, fmt};

/// The credentials of a URL's userinfo, percent-decoded. `Debug` shows the user name only.
#[derive(Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// The user name (may be empty, as in `https://:token@host`).
    pub username: String,
    /// The password, if the userinfo has a `:`.
    pub password: Option<String>,
}

impl fmt::Debug for UserInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserInfo")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Splits `url` into the URL without its userinfo and the userinfo's credentials.
///
/// ```
/// use capture_core::url::split_userinfo;
///
/// let (url, userinfo) = split_userinfo("https://loki:p%40ss@logs.example.com:3100/otlp");
/// assert_eq!(url, "https://logs.example.com:3100/otlp");
/// let userinfo = userinfo.unwrap();
/// assert_eq!((userinfo.username.as_str(), userinfo.password.as_deref()), ("loki", Some("p@ss")));
/// assert!(!format!("{userinfo:?}").contains("p@ss"));
/// ```
pub fn split_userinfo(url: &str) -> (Cow<'_, str>, Option<UserInfo>) {
    let Some((authority_start, at, authority_end)) = userinfo_bounds(url) else {
        return (Cow::Borrowed(url), None);
    };
    let userinfo = &url[authority_start..at];
    let (username, password) = match userinfo.split_once(':') {
        Some((username, password)) => (username, Some(decode(password))),
        None => (userinfo, None),
    };
    let stripped = format!(
        "{}{}{}",
        &url[..authority_start],
        &url[at + 1..authority_end],
        &url[authority_end..]
    );
    let userinfo = UserInfo {
        username: decode(username),
        password,
    };
    (Cow::Owned(stripped), Some(userinfo))
}

/// `url` without its userinfo: what may be logged, shown or printed.
///
/// ```
/// use capture_core::url::strip_userinfo;
///
/// assert_eq!(strip_userinfo("tcp://admin:hunter2@10.0.0.1:2376"), "tcp://10.0.0.1:2376");
/// assert_eq!(strip_userinfo("unix:///var/run/docker.sock"), "unix:///var/run/docker.sock");
/// // Not a URL at all, still cleaned: this is what an error message would quote.
/// assert_eq!(strip_userinfo("u:p w@host:3100/x"), "host:3100/x");
/// ```
pub fn strip_userinfo(url: &str) -> Cow<'_, str> {
    split_userinfo(url).0
}

/// A serde `deserialize_with` helper for an optional URL: the userinfo is dropped as the value
/// is read, so the configuration never holds it.
pub fn deserialize_without_userinfo<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let url: Option<String> = serde::Deserialize::deserialize(deserializer)?;
    Ok(url.map(|url| strip_userinfo(&url).into_owned()))
}

/// Where the userinfo is: (start of the authority, index of its last `@`, end of the
/// authority), or `None` if there is no userinfo. Without a `scheme://` the text is taken as
/// starting with the authority.
fn userinfo_bounds(url: &str) -> Option<(usize, usize, usize)> {
    let authority_start = url.find("://").map_or(0, |index| index + 3);
    let authority_end = url[authority_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |index| authority_start + index);
    let at = url[authority_start..authority_end].rfind('@')? + authority_start;
    Some((authority_start, at, authority_end))
}

/// Percent-decodes a userinfo part, as a browser or curl would before sending it.
fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}
