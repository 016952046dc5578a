//! The Entra identity endpoints: tokens, keys and discovery.
//!
//! * `POST /{tenant}/oauth2/v2.0/token`: client credentials with a secret
//!   (form field or HTTP Basic), and the authorization code grant with PKCE
//!   (see [`crate::sim::signin`]).
//! * `GET /{tenant}/discovery/v2.0/keys`: the JWKS.
//! * `GET /{tenant}/v2.0/.well-known/openid-configuration`.
//!
//! Tokens are real RS256 JWTs signed with the emulator's key. The default key
//! is a well-known development key (like Azurite's well-known account): the
//! emulator is for tests and demos, never for anything real.

use axum::Form;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::sim::model::{App, Tenant};
use crate::sim::state::Sim;

/// The audience of Graph access tokens.
pub const GRAPH_AUDIENCE: &str = "https://graph.microsoft.com";
/// Graph's application id, also accepted as audience.
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
/// Access token lifetime, in seconds (Entra: 60 to 90 minutes; 3599 is typical).
pub const ACCESS_TOKEN_SECONDS: i64 = 3599;

const WELL_KNOWN_KEY: &str = include_str!("keys/well-known-signing-key.pem");

/// The key the emulator signs tokens with.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    /// The same key for ring, which signs (RSA is the emulator's costliest
    /// work under load, and ring's is several times faster).
    signer: std::sync::Arc<ring::signature::RsaKeyPair>,
    decoding: DecodingKey,
    jwk: Jwk,
}

/// The DER inside a PEM block (its base64 lines between the markers).
fn pem_body(pem: &[u8]) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "the key is not PEM text".to_owned())?;
    let base64: String = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(base64)
        .map_err(|e| format!("the key's PEM: {e}"))
}

impl SigningKey {
    /// The well-known development key.
    pub fn well_known() -> Result<SigningKey, String> {
        SigningKey::from_pem(WELL_KNOWN_KEY.as_bytes())
    }

    /// A key from an RSA private key in PEM.
    pub fn from_pem(pem: &[u8]) -> Result<SigningKey, String> {
        let encoding = EncodingKey::from_rsa_pem(pem).map_err(|e| e.to_string())?;
        let mut jwk =
            Jwk::from_encoding_key(&encoding, Algorithm::RS256).map_err(|e| e.to_string())?;
        let (n, e) = match &jwk.algorithm {
            jsonwebtoken::jwk::AlgorithmParameters::RSA(rsa) => (rsa.n.clone(), rsa.e.clone()),
            _ => return Err("not an RSA key".to_owned()),
        };
        // The key id is a digest of the public key, as Entra's are opaque ids.
        let kid = {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(format!("{n}.{e}").as_bytes());
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..15])
        };
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(KeyAlgorithm::RS256);
        let decoding = DecodingKey::from_rsa_components(&n, &e).map_err(|e| e.to_string())?;
        let signer = ring::signature::RsaKeyPair::from_der(&pem_body(pem)?)
            .map_err(|e| format!("the RSA key: {e}"))?;
        Ok(SigningKey {
            kid,
            signer: std::sync::Arc::new(signer),
            decoding,
            jwk,
        })
    }

    /// Signs `claims` as an RS256 JWT with this key's `kid`.
    pub fn sign(&self, claims: &Value) -> Result<String, String> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".to_owned());
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let json = |e: serde_json::Error| format!("encoding the token: {e}");
        let mut message = b64(&serde_json::to_vec(&header).map_err(json)?);
        message.push('.');
        message.push_str(&b64(&serde_json::to_vec(claims).map_err(json)?));
        let mut signature = vec![0; self.signer.public().modulus_len()];
        self.signer
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                message.as_bytes(),
                &mut signature,
            )
            .map_err(|e| format!("signing: {e}"))?;
        message.push('.');
        message.push_str(&b64(&signature));
        Ok(message)
    }

    /// Verifies a token's signature and expiry (with 60 s of leeway), and
    /// returns its claims. Audience and issuer are the caller's to check.
    pub fn verify(&self, token: &str) -> Result<Value, String> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_aud = false;
        validation.leeway = 60;
        validation.set_required_spec_claims(&["exp", "nbf", "iat"]);
        jsonwebtoken::decode::<Value>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| e.to_string())
    }

    /// The JWKS with this key.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: vec![self.jwk.clone()],
        }
    }
}

/// The issuer of tokens for `tenant_id`.
pub fn issuer(sim: &Sim, tenant_id: &str) -> String {
    format!("{}/{tenant_id}/v2.0", sim.base_url())
}

/// An OAuth error response as Entra writes it.
pub fn oauth_error(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
    let trace = uuid::Uuid::new_v4().to_string();
    let now = crate::sim::state::rfc3339(time::OffsetDateTime::now_utc());
    (
        status,
        Json(json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description} Trace ID: {trace} Timestamp: {now}"),
            "error_codes": [code],
            "timestamp": now,
            "trace_id": trace,
            "correlation_id": uuid::Uuid::new_v4().to_string(),
            "error_uri": "https://login.microsoftonline.com/error?code={code}",
        })),
    )
        .into_response()
}

/// The token request, all grants' fields.
#[derive(Debug, Deserialize)]
pub struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
    /// Authorization code grant.
    pub code: Option<String>,
    /// Authorization code grant.
    pub redirect_uri: Option<String>,
    /// Authorization code grant with PKCE.
    pub code_verifier: Option<String>,
}

/// `POST /{tenant}/oauth2/v2.0/token`.
pub async fn token(
    State(sim): State<Sim>,
    Path(tenant_name): Path<String>,
    headers: HeaderMap,
    Form(request): Form<TokenRequest>,
) -> Response {
    // Held to the end (nothing below awaits): cloning the whole tenant per
    // token was the emulator's costliest work under load.
    let tenant = sim.tenant();
    if !tenant.is_named(&tenant_name) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant_name}' not found."),
        );
    }
    let (client_id, client_secret) = match client_credentials(&headers, &request) {
        Some(pair) => pair,
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
            );
        }
    };
    let Some(app) = tenant.apps.iter().find(|a| a.client_id == client_id) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'.",
                tenant.name
            ),
        );
    };
    if client_secret.as_deref() != Some(app.client_secret.as_str()) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
        );
    }
    match request.grant_type.as_deref() {
        Some("client_credentials") => {
            client_credentials_token(&sim, &tenant, app, request.scope.as_deref())
        }
        Some("authorization_code") => crate::sim::signin::redeem(&sim, &tenant, app, &request),
        Some(other) => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{other}'."),
        ),
        None => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        ),
    }
}

/// The client id and secret, from the form or HTTP Basic.
fn client_credentials(
    headers: &HeaderMap,
    request: &TokenRequest,
) -> Option<(String, Option<String>)> {
    if let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(basic.trim())
        && let Ok(text) = String::from_utf8(decoded)
        && let Some((id, secret)) = text.split_once(':')
    {
        return Some((id.to_owned(), Some(secret.to_owned())));
    }
    request
        .client_id
        .clone()
        .map(|id| (id, request.client_secret.clone()))
}

fn client_credentials_token(
    sim: &Sim,
    tenant: &Tenant,
    app: &App,
    scope: Option<&str>,
) -> Response {
    let graph_default = [
        "https://graph.microsoft.com/.default",
        "00000003-0000-0000-c000-000000000000/.default",
    ];
    match scope {
        Some(s) if graph_default.contains(&s) => {}
        Some(s) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                1002012,
                &format!(
                    "The provided value for scope {s} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                ),
            );
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'scope'.",
            );
        }
    }
    let now = sim.now().unix_timestamp();
    let claims = json!({
        "aud": GRAPH_AUDIENCE,
        "iss": issuer(sim, &tenant.id),
        "iat": now,
        "nbf": now,
        "exp": now + ACCESS_TOKEN_SECONDS,
        "tid": tenant.id,
        "oid": app.client_id,
        "sub": app.client_id,
        "appid": app.client_id,
        "azp": app.client_id,
        "app_displayname": app.display_name,
        "idtyp": "app",
        "roles": app.roles,
        "wids": app.directory_roles,
        "uti": uuid::Uuid::new_v4().simple().to_string(),
        "ver": "2.0",
    });
    match sim.key().sign(&claims) {
        Ok(token) => Json(json!({
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_SECONDS,
            "ext_expires_in": ACCESS_TOKEN_SECONDS,
            "access_token": token,
        }))
        .into_response(),
        Err(e) => oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", 50000, &e),
    }
}

/// `GET /{tenant}/discovery/v2.0/keys`.
pub async fn keys(State(sim): State<Sim>) -> Json<JwkSet> {
    Json(sim.key().jwks())
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`.
pub async fn openid_configuration(
    State(sim): State<Sim>,
    Path(tenant_name): Path<String>,
) -> Response {
    let tenant_id = {
        let tenant = sim.tenant();
        if !tenant.is_named(&tenant_name) {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_tenant",
                90002,
                &format!("Tenant '{tenant_name}' not found."),
            );
        }
        tenant.id.clone()
    };
    let base = format!("{}/{tenant_id}", sim.base_url());
    Json(json!({
        "issuer": issuer(&sim, &tenant_id),
        "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
        "token_endpoint": format!("{base}/oauth2/v2.0/token"),
        "jwks_uri": format!("{base}/discovery/v2.0/keys"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "nonce", "oid", "tid", "amr", "preferred_username", "name", "auth_time"],
        "tenant_region_scope": "NA",
        "cloud_instance_name": "latchkey.sim",
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_signed_with_ring_verify_as_rs256_with_the_keys_id() {
        let key = SigningKey::well_known().unwrap();
        let token = key
            .sign(&serde_json::json!({"sub": "x", "exp": i64::MAX / 2, "nbf": 0, "iat": 0}))
            .unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        assert_eq!(key.verify(&token).unwrap()["sub"], "x");
        // A changed payload no longer verifies.
        let mut parts: Vec<&str> = token.split('.').collect();
        let other = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"y","exp":9999999999,"nbf":0,"iat":0}"#);
        parts[1] = &other;
        assert!(key.verify(&parts.join(".")).is_err());
    }
}
