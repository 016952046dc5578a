//! [`Secret`]: a value that must never reach a log, an error message or a
//! debugger's pretty-printer by accident.

use std::fmt;

/// A secret (a client secret, an access token). It has no `Display`, and its
/// `Debug` prints `Secret(..)`, so neither `{}` nor `{:?}` nor a `tracing`
/// field can show it; the only way to the value is [`Secret::expose`], which
/// is easy to find in review.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that must send it (a form field, an
    /// `Authorization` header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_does_not_show_the_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(..)");
        assert_eq!(format!("{:#?}", Some(&secret)), "Some(\n    Secret(..),\n)");
        assert_eq!(secret.expose(), "hunter2");
    }
}
