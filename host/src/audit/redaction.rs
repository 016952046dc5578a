//! Keeping secrets out of the log: the check every body passes before it is
//! appended, and [`redact`] for callers who want to log a request's shape.
//!
//! The log is kept forever and exported to auditors, so it must never hold a
//! password, Temporary Access Pass, one-time code or token (DESIGN.md,
//! guardrail 5). Callers pass secret-free bodies; this check is the net under
//! them. It goes by key names, since a secret under an innocent key cannot be
//! told from any other string: a key is secret-looking when, compared without
//! case, `_` or `-`,
//!
//! * it is `password`, `secret`, `token`, `code` or `temporaryaccesspass`, or
//! * it ends in `password`, `secret` or `token` (`newPassword`,
//!   `client_secret`, `access_token`).
//!
//! `code` counts only as the whole key, so `errorCode` is fine; name a Graph
//! error's code `error_code` rather than copying Graph's `code`. A
//! secret-looking key is accepted when its value is exactly [`REDACTED`] (what
//! [`redact`] writes), so a logged request keeps its shape and shows that a
//! password was set without showing it.

use serde_json::Value;

/// The value that stands in for a removed secret.
pub const REDACTED: &str = "[redacted]";

const WHOLE: [&str; 5] = ["password", "secret", "token", "code", "temporaryaccesspass"];
const SUFFIXES: [&str; 3] = ["password", "secret", "token"];

/// Whether a JSON object key names a secret (see the module documentation).
pub fn is_secret_key(key: &str) -> bool {
    let folded: String = key
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    WHOLE.contains(&folded.as_str()) || SUFFIXES.iter().any(|s| folded.ends_with(s))
}

/// The JSON pointer (RFC 6901) of the first secret-looking key whose value is
/// not [`REDACTED`], if any.
pub fn find_secret(body: &Value) -> Option<String> {
    fn walk(value: &Value, at: &mut String) -> Option<String> {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    let len = at.len();
                    push_token(at, key);
                    if is_secret_key(key) && v.as_str() != Some(REDACTED) {
                        return Some(at.clone());
                    }
                    if let Some(found) = walk(v, at) {
                        return Some(found);
                    }
                    at.truncate(len);
                }
                None
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    let len = at.len();
                    at.push('/');
                    at.push_str(&i.to_string());
                    if let Some(found) = walk(v, at) {
                        return Some(found);
                    }
                    at.truncate(len);
                }
                None
            }
            _ => None,
        }
    }
    walk(body, &mut String::new())
}

/// Replaces the value of every secret-looking key with [`REDACTED`]; returns
/// the JSON pointers it replaced (OPA's `erased`), so the body can say what
/// was removed.
pub fn redact(body: &mut Value) -> Vec<String> {
    fn walk(value: &mut Value, at: &mut String, erased: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    let len = at.len();
                    push_token(at, key);
                    if is_secret_key(key) {
                        if v.as_str() != Some(REDACTED) {
                            *v = Value::String(REDACTED.to_owned());
                            erased.push(at.clone());
                        }
                    } else {
                        walk(v, at, erased);
                    }
                    at.truncate(len);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter_mut().enumerate() {
                    let len = at.len();
                    at.push('/');
                    at.push_str(&i.to_string());
                    walk(v, at, erased);
                    at.truncate(len);
                }
            }
            _ => {}
        }
    }
    let mut erased = Vec::new();
    walk(body, &mut String::new(), &mut erased);
    erased
}

fn push_token(pointer: &mut String, key: &str) {
    pointer.push('/');
    pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_keys_are_found_at_any_depth_and_case() {
        for (body, pointer) in [
            (json!({"password": "x"}), "/password"),
            (json!({"PassWord": 1}), "/PassWord"),
            (json!({"a": {"Secret": null}}), "/a/Secret"),
            (
                json!({"a": [{"ok": 1}, {"temporaryAccessPass": "T"}]}),
                "/a/1/temporaryAccessPass",
            ),
            (json!({"CODE": "123456"}), "/CODE"),
            (json!({"token": "eyJ"}), "/token"),
            (
                json!({"passwordProfile": {"password": "p"}}),
                "/passwordProfile/password",
            ),
            (json!({"client_secret": "s"}), "/client_secret"),
            (json!({"access-token": "t"}), "/access-token"),
            (json!({"newPassword": "p"}), "/newPassword"),
            (json!({"a/b": {"token": "t"}}), "/a~1b/token"),
        ] {
            assert_eq!(find_secret(&body).as_deref(), Some(pointer), "{body}");
        }
    }

    #[test]
    fn ordinary_bodies_pass() {
        let body = json!({
            "facts_sha256": "ab",
            "errorCode": 50053,
            "error_code": "Request_ResourceNotFound",
            "forceChangePasswordNextSignIn": true,
            "lastPasswordChangeDateTime": "2026-01-01T00:00:00Z",
            "methods": ["password", "microsoftAuthenticator"],
            "graph_request_ids": ["r1"],
            "note": "the password was reset"
        });
        assert_eq!(find_secret(&body), None);
    }

    #[test]
    fn redacted_bodies_pass_and_say_what_was_removed() {
        let mut body = json!({
            "passwordProfile": {"password": "hunter2", "forceChangePasswordNextSignIn": true},
            "items": [{"temporaryAccessPass": "TAP"}],
            "keep": 1
        });
        let erased = redact(&mut body);
        assert_eq!(
            erased,
            ["/items/0/temporaryAccessPass", "/passwordProfile/password"]
        );
        assert_eq!(find_secret(&body), None);
        assert!(!body.to_string().contains("hunter2"));
        assert!(!body.to_string().contains("\"TAP\""));
        assert_eq!(body["keep"], 1);
    }
}
