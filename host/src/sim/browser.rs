//! What a person's browser and phone do at the emulator's sign-in, over
//! HTTP: open the authorize page, submit it, and approve the Authenticator
//! request with the number shown, as `latchkey loadtest` and the tests do.
//! The emulator is driven only through its pages and its `/_sim/` phone
//! API, never through its state.

use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::{Value, json};

/// How the person signs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// With this password (then the Authenticator, if they have one).
    Password(&'a str),
    /// "Use the Authenticator app instead": phone sign-in, no password.
    Passwordless,
}

/// The sign-in did not go as a person's would.
#[derive(Debug, thiserror::Error)]
#[error("signing in at the emulator: {0}")]
pub struct BrowserError(String);

/// Signs in as `upn` at `authorize_url` (an emulator authorize URL, as the
/// app sent the browser there) with `step`, approving the Authenticator
/// request on the simulated phone when one is made. Returns where the
/// emulator sends the browser back: the app's redirect URI with `code` and
/// `state`, or with `error`. `http` must not follow redirects.
pub async fn sign_in(
    http: &reqwest::Client,
    authorize_url: &str,
    upn: &str,
    step: Step<'_>,
) -> Result<String, BrowserError> {
    let fail =
        |what: &str, e: &dyn std::error::Error| BrowserError(format!("{what}: {}", chain(e)));
    let url = reqwest::Url::parse(authorize_url).map_err(|e| fail("the authorize URL", &e))?;
    let page = http
        .get(url.clone())
        .send()
        .await
        .map_err(|e| fail("the sign-in page", &e))?;
    if page.status() != StatusCode::OK {
        return Err(BrowserError(format!(
            "the sign-in page answered {}",
            page.status()
        )));
    }
    // The page's form posts the authorize request's parameters back as
    // hidden fields, with the person's choices.
    let mut form: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    form.push(("username".into(), upn.into()));
    match step {
        Step::Password(password) => {
            form.push(("step".into(), "password".into()));
            form.push(("password".into(), password.into()));
        }
        Step::Passwordless => form.push(("step".into(), "passwordless".into())),
    }
    let mut action = url.clone();
    action.set_query(None);
    let submitted = http
        .post(action)
        .form(&form)
        .send()
        .await
        .map_err(|e| fail("submitting the sign-in", &e))?;
    let next = redirect(&url, &submitted, "the sign-in")?;
    if !next.path().contains("/authorize/mfa/") {
        return Ok(next.to_string());
    }
    approve(http, &next).await?;
    let waiting = http
        .get(next.clone())
        .send()
        .await
        .map_err(|e| fail("the approval page", &e))?;
    Ok(redirect(&next, &waiting, "the approved sign-in")?.to_string())
}

/// Approves the Authenticator request the page at `mfa_page` waits for,
/// typing the number it shows.
async fn approve(http: &reqwest::Client, mfa_page: &reqwest::Url) -> Result<(), BrowserError> {
    let fail =
        |what: &str, e: &dyn std::error::Error| BrowserError(format!("{what}: {}", chain(e)));
    let id = mfa_page
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or_default();
    let phone = mfa_page
        .join(&format!("/_sim/authenticator/{id}"))
        .map_err(|e| fail("the phone's URL", &e))?;
    let request: Value = http
        .get(phone.clone())
        .send()
        .await
        .map_err(|e| fail("the phone", &e))?
        .json()
        .await
        .map_err(|e| fail("the phone's request", &e))?;
    let answered = http
        .post(phone)
        .json(&json!({"approve": true, "number": request["number"]}))
        .send()
        .await
        .map_err(|e| fail("approving on the phone", &e))?;
    if answered.status() != StatusCode::OK {
        return Err(BrowserError(format!(
            "the phone's approval answered {}",
            answered.status()
        )));
    }
    Ok(())
}

/// The absolute `Location` of a redirect answer to a request for `base`.
fn redirect(
    base: &reqwest::Url,
    response: &reqwest::Response,
    what: &str,
) -> Result<reqwest::Url, BrowserError> {
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            BrowserError(format!(
                "{what} answered {} without a redirect",
                response.status()
            ))
        })?;
    base.join(location)
        .map_err(|e| BrowserError(format!("{what} redirected to {location:?}: {e}")))
}

/// An error and its sources, `a: b: c`: reqwest's own message alone does
/// not say whether the connection was refused, reset or timed out.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
