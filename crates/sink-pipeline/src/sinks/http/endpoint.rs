//! A sink's endpoint URL, stored without the credentials an operator may have written into it.

use std::fmt;

use capture_core::url::{UserInfo, split_userinfo};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A configured base URL such as `https://user:password@loki.example.com:3100`.
///
/// The userinfo (`user:password@`) is split off as the value is read: [`Endpoint::as_str`],
/// `Display`, `Debug` and serialisation show the URL without it, so no log line, error or
/// printed configuration carries the password. The sink sends it as HTTP basic authentication.
///
/// ```
/// use sink_pipeline::config::Endpoint;
///
/// let endpoint = Endpoint::from("https://loki:s3cret@logs.example.com");
/// assert_eq!(endpoint.as_str(), "https://logs.example.com");
/// assert!(!format!("{endpoint:?}").contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    url: String,
    userinfo: Option<UserInfo>,
}

impl Endpoint {
    /// The URL without its userinfo.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The credentials written into the URL, if any.
    pub fn userinfo(&self) -> Option<&UserInfo> {
        self.userinfo.as_ref()
    }
}

impl From<&str> for Endpoint {
    fn from(text: &str) -> Endpoint {
        let (url, userinfo) = split_userinfo(text);
        Endpoint {
            url: url.into_owned(),
            userinfo,
        }
    }
}

impl From<String> for Endpoint {
    fn from(text: String) -> Endpoint {
        Endpoint::from(text.as_str())
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("userinfo", &self.userinfo)
            .finish()
    }
}

impl Serialize for Endpoint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.url)
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Endpoint, D::Error> {
        String::deserialize(deserializer).map(Endpoint::from)
    }
}
