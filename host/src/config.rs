//! Configuration (`latchkey.toml`): parsed from TOML into a raw form, then
//! validated into [`Config`], so that the rest of the host only sees values
//! that make sense.
//!
//! Parsing is strict: an unknown key anywhere is an error (a typo must not
//! silently fall back to a default), and every error names its line. Relative
//! paths are taken relative to the configuration file's directory. Files the
//! configuration names (keys, the admin token, Graph client secrets) are read
//! when the service starts, not when the text is parsed.
//!
//! ```toml
//! [host]
//! # The host's receipt signing key: an ed25519 private key in PKCS#8 PEM, as
//! # `latchkey keygen --out host` writes it. Required by `latchkey serve`.
//! signing_key = "host.pem"
//! # Public keys of earlier host keys: receipts they signed still verify
//! # (key rotation). Default: none.
//! trusted_keys = ["host-2025.pub.pem"]
//! # The SQLite database holding the audit log. Default: "latchkey.db"
//! # beside this file.
//! database = "latchkey.db"
//! # How old an intent without outcome must be before start-up
//! # reconciliation records its outcome as unknown. Default: 900 (15 min).
//! reconcile_grace_seconds = 900
//!
//! # The admin API. Without this table the admin API is off.
//! [admin]
//! # An IP address and port. Default: "127.0.0.1:7720". An address other
//! # than loopback is refused unless allow_remote = true (default false).
//! listen = "127.0.0.1:7720"
//! # A file holding the bearer token, at least 32 visible ASCII characters
//! # (`openssl rand -hex 32 > admin.token`). Required.
//! token_file = "admin.token"
//!
//! # The web chat, Latchkey's demo channel (`crate::web`). Without this
//! # table `latchkey serve` serves no web chat.
//! [web]
//! # An IP address and port. Default: "127.0.0.1:7700". An address other
//! # than loopback is refused unless allow_remote = true (default false).
//! listen = "127.0.0.1:7700"
//! # The tenant whose people sign in to it. Default: the only tenant, when
//! # exactly one is configured. It must have a `sign_in` table: that is how
//! # they sign in.
//! tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
//! # Answers carry a Server-Timing header ("total" and "upstream", the part
//! # spent waiting on Microsoft, in ms), as `latchkey loadtest` reads.
//! # Default false.
//! server_timing = false
//!
//! # The Slack channel (`crate::slack`). Without this table `latchkey serve`
//! # serves no Slack routes. Secrets are never inline: each comes from a file
//! # (relative to this file) or an environment variable, exactly one of the two.
//! [slack]
//! signing_secret_file = "slack-signing.secret"   # or signing_secret_env
//! bot_token_env = "SLACK_BOT_TOKEN"             # or bot_token_file
//! # The Web API. Default: "https://slack.com/api".
//! api_base_url = "https://slack.com/api"
//! # The Entra tenant of this Slack workspace's people. Default: the only
//! # tenant, when exactly one is configured.
//! tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
//! # Where /slack/events and /slack/interactivity are served. Default:
//! # "127.0.0.1:7702"; an address other than loopback is refused unless
//! # allow_remote = true (default false): put TLS in front, Slack calls
//! # an https URL.
//! listen = "127.0.0.1:7702"
//!
//! # The Microsoft Teams channel (`crate::teams`), a Bot Framework bot.
//! # Without this table `latchkey serve` serves no Teams route. It serves
//! # every configured tenant: an activity's tenant must be one of them.
//! [teams]
//! # The bot's Microsoft App ID (its Entra app registration). Required.
//! app_id = "00000000-0000-0000-0000-000000000000"
//! # The app's client secret: a file (relative to this file) or an
//! # environment variable, exactly one. Never inline.
//! app_secret_file = "teams-app.secret"          # or app_secret_env
//! # The tenant the bot's app registration lives in (a single-tenant bot),
//! # for its client-credentials token. Default: the only tenant, when exactly
//! # one is configured. "botframework.com" for a legacy multi-tenant bot.
//! app_tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
//! # Where tokens come from. Default: "https://login.microsoftonline.com".
//! authority = "https://login.microsoftonline.com"
//! # Bot Framework's OpenID metadata, naming the keys inbound tokens are
//! # checked against. Default: the URL in crate::teams::token.
//! openid_metadata_url = "https://login.botframework.com/v1/.well-known/openidconfiguration"
//! # The hosts a serviceUrl may name (each also matches its subdomains);
//! # replies and the bot's token go nowhere else. Default: Microsoft's own
//! # list (DEFAULT_TEAMS_SERVICE_HOSTS). http is allowed to loopback only.
//! service_url_hosts = ["smba.trafficmanager.net", "botframework.com"]
//! # Where POST /api/messages is served. Default: "127.0.0.1:3978"; an
//! # address other than loopback is refused unless allow_remote = true
//! # (default false): put TLS in front, the connector calls an https URL.
//! listen = "127.0.0.1:3978"
//!
//! [policy]
//! # Module, signature and publisher key files are named relative to this
//! # directory and reached only through it.
//! modules_dir = "/etc/latchkey/policies"
//! # Precompiled modules; optional. Must be writable by Latchkey alone.
//! cache_dir = "/var/cache/latchkey/modules"
//!
//! [tenants.72f988bf-86f1-41af-91ab-2d7cd011db47]
//! # Default: the tenant id.
//! name = "Contoso"
//! module = "contoso.wasm"
//! sha256 = "<64 lowercase hex digits>"
//! # Optional: when present, a signature by one of these keys is required.
//! publisher_keys = ["msp-2026.pub.pem"]
//! # Optional; defaults to the module's name with ".sig" appended.
//! signature = "contoso.wasm.sig"
//! # The longest Temporary Access Pass the host signs for, whatever the
//! # module asks, in minutes. Default 60; Entra accepts 10 to 43200.
//! max_tap_lifetime_minutes = 60
//! # The tenant's offset from UTC, in minutes, for the local hour and weekday
//! # modules see. Default 0; from -720 to 840.
//! utc_offset_minutes = 60
//!
//! # The tenant's app registration, for Microsoft Graph. Required by
//! # `latchkey serve`.
//! [tenants.72f988bf-86f1-41af-91ab-2d7cd011db47.graph]
//! client_id = "00000000-0000-0000-0000-000000000000"
//! # The client secret: exactly one of a file or an environment variable.
//! client_secret_file = "contoso.secret"
//! # client_secret_env = "CONTOSO_GRAPH_SECRET"
//! # Default: "https://login.microsoftonline.com".
//! authority = "https://login.microsoftonline.com"
//! # Default: "https://graph.microsoft.com/v1.0".
//! graph_base_url = "https://graph.microsoft.com/v1.0"
//! # Default: "https://graph.microsoft.com/.default"; national clouds name
//! # their own Graph host.
//! scope = "https://graph.microsoft.com/.default"
//! # Per attempt. Default 10.
//! timeout_seconds = 10
//! # Default 4.
//! max_retries = 4
//!
//! # How the tenant's people sign in to Latchkey (OIDC authorization code
//! # with PKCE): the web chat's sign-in and the MFA step-up. Without this
//! # table neither is available, nor are recovery email codes.
//! [tenants.72f988bf-86f1-41af-91ab-2d7cd011db47.sign_in]
//! # Default: the graph table's client_id (one app registration for both).
//! client_id = "00000000-0000-0000-0000-000000000000"
//! # The app's secret, from at most one of a file or an environment
//! # variable. Default: the Graph client secret when client_id is the graph
//! # table's, else none (a public client, PKCE alone).
//! # client_secret_file = "signin.secret"
//! # Default: the graph table's authority.
//! authority = "https://login.microsoftonline.com"
//! # Where the authority sends the browser back: https, or http to this
//! # machine only. Required for the MFA step-up. No default.
//! redirect_uri = "http://127.0.0.1:7700/callback"
//! # The mailbox (UPN or object id) recovery codes are sent from, with
//! # Graph sendMail (Mail.Send). No default: without it, no recovery email
//! # codes.
//! mail_from = "helpdesk@contoso.com"
//! ```
//!
//! The client secret is never written in the configuration itself: the file
//! is copied into repositories, tickets and backups, and a secret in it
//! leaks with it. A file readable by the service alone, or an environment
//! variable set by the service manager, keeps it out of all of those.
//!
//! `host/latchkey.example.toml` is a complete example; a test parses it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::admin::AdminToken;
use crate::audit::DEFAULT_RECONCILE_GRACE;
use crate::graph::{self, GraphConfig, Secret};
use crate::policy::{ModuleHash, TAP_LIFETIME_MINUTES};
use crate::tenant::TenantId;
use crate::verification::OidcClient;

/// Default [`HostConfig::database`]: `latchkey.db`, beside the
/// configuration file.
pub const DEFAULT_DATABASE: &str = "latchkey.db";
/// Default [`AdminConfig::listen`]: `127.0.0.1:7720`, loopback only.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7720);
/// Default [`SlackConfig::listen`]: `127.0.0.1:7702`, loopback only.
pub const DEFAULT_SLACK_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7702);
/// Default [`SlackConfig::api_base_url`]: Slack's Web API.
pub const DEFAULT_SLACK_API_BASE_URL: &str = "https://slack.com/api";
/// Default [`TeamsConfig::listen`]: `127.0.0.1:3978` (Bot Framework's
/// customary port), loopback only.
pub const DEFAULT_TEAMS_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 3978);
/// Default [`TeamsConfig::authority`].
pub const DEFAULT_TEAMS_AUTHORITY: &str = "https://login.microsoftonline.com";
/// Default [`TeamsConfig::service_url_hosts`]: the hosts Microsoft's own
/// Agents SDK lets a bot send its token to.
pub const DEFAULT_TEAMS_SERVICE_HOSTS: &[&str] = &[
    "botframework.com",
    "smba.trafficmanager.net",
    "teams.microsoft.com",
    "teams.microsoft.us",
];
/// Default [`WebConfig::listen`]: `127.0.0.1:7700`, loopback only.
pub const DEFAULT_WEB_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7700);
/// The shortest admin token accepted, in characters: 32 random hex digits
/// are 128 bits, beyond guessing over a network.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 32;
/// The longest admin token accepted, in characters; a bound on what is read
/// and compared, far above any token a generator makes.
pub const MAX_ADMIN_TOKEN_CHARS: usize = 1024;
/// Default [`TenantConfig::max_tap_lifetime_minutes`]: 60, Entra's own
/// default lifetime for a Temporary Access Pass.
pub const DEFAULT_MAX_TAP_LIFETIME_MINUTES: u32 = 60;
/// The UTC offsets accepted, in minutes: UTC-12:00 to UTC+14:00, the range
/// of the world's time zones.
pub const UTC_OFFSET_MINUTES: RangeInclusive<i32> = -720..=840;
/// The longest client secret file read, in bytes: a secret is well under a
/// kilobyte; anything larger is the wrong file.
const MAX_SECRET_FILE_BYTES: u64 = 16 * 1024;

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where modules live.
    pub modules_dir: PathBuf,
    /// Where precompiled modules are cached, if anywhere.
    pub cache_dir: Option<PathBuf>,
    /// Each tenant's settings.
    pub tenants: BTreeMap<TenantId, TenantConfig>,
    /// The host's keys and storage (`[host]`; defaults when absent).
    pub host: HostConfig,
    /// The admin API (`[admin]`); `None` turns it off.
    pub admin: Option<AdminConfig>,
    /// The web chat (`[web]`); `None` turns it off.
    pub web: Option<WebConfig>,
    /// The Slack channel (`[slack]`); `None` turns it off.
    pub slack: Option<SlackConfig>,
    /// The Teams channel (`[teams]`); `None` turns it off.
    pub teams: Option<TeamsConfig>,
}

/// The Teams channel's settings: `[teams]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamsConfig {
    /// Where `/api/messages` is served. Default [`DEFAULT_TEAMS_LISTEN`];
    /// anything but a loopback address requires `allow_remote = true`.
    pub listen: SocketAddr,
    /// Whether a non-loopback `listen` was explicitly allowed. Default false.
    pub allow_remote: bool,
    /// The bot's Microsoft App ID. Required.
    pub app_id: String,
    /// Where the app's client secret is read from. Required.
    pub app_secret: SecretSource,
    /// The tenant of the bot's app registration (a GUID, or
    /// `botframework.com`): the one named, else the only tenant configured.
    pub app_tenant: String,
    /// The token authority. Default [`DEFAULT_TEAMS_AUTHORITY`].
    pub authority: String,
    /// Bot Framework's OpenID metadata URL. Default
    /// [`crate::teams::token::DEFAULT_OPENID_METADATA_URL`].
    pub openid_metadata_url: String,
    /// The hosts a `serviceUrl` may name. Default
    /// [`DEFAULT_TEAMS_SERVICE_HOSTS`].
    pub service_url_hosts: Vec<String>,
}

/// The Slack channel's settings: `[slack]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackConfig {
    /// Where its routes are served. Default [`DEFAULT_SLACK_LISTEN`];
    /// anything but a loopback address requires `allow_remote = true`.
    pub listen: SocketAddr,
    /// Whether a non-loopback `listen` was explicitly allowed. Default false.
    pub allow_remote: bool,
    /// Where the app's signing secret is read from.
    pub signing_secret: SecretSource,
    /// Where the bot token (`xoxb-...`) is read from.
    pub bot_token: SecretSource,
    /// The Web API's base URL. Default [`DEFAULT_SLACK_API_BASE_URL`].
    pub api_base_url: String,
    /// The Entra tenant of the workspace's people: the one named, else the
    /// only tenant configured.
    pub tenant: TenantId,
}

/// The host's own settings: `[host]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// The receipt signing key (PKCS#8 PEM). `latchkey serve` requires it;
    /// other commands do not read it.
    pub signing_key: Option<PathBuf>,
    /// Public keys of earlier host keys, still accepted when verifying
    /// receipts. Default: none.
    pub trusted_keys: Vec<PathBuf>,
    /// The SQLite database for the audit log. Default [`DEFAULT_DATABASE`]
    /// beside the configuration file.
    pub database: PathBuf,
    /// How old an unanswered intent must be before start-up reconciliation
    /// answers it. Default [`DEFAULT_RECONCILE_GRACE`] (15 minutes).
    pub reconcile_grace: Duration,
}

/// The admin API's settings: `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Where it listens. Default [`DEFAULT_ADMIN_LISTEN`]; anything but a
    /// loopback address requires `allow_remote = true`.
    pub listen: SocketAddr,
    /// Whether a non-loopback `listen` was explicitly allowed. Default false.
    pub allow_remote: bool,
    /// The file holding the bearer token. Required.
    pub token_file: PathBuf,
}

/// The web chat's settings: `[web]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfig {
    /// Where it listens. Default [`DEFAULT_WEB_LISTEN`]; anything but a
    /// loopback address requires `allow_remote = true`.
    pub listen: SocketAddr,
    /// Whether a non-loopback `listen` was explicitly allowed. Default false.
    pub allow_remote: bool,
    /// The tenant it serves: the one named, else the only tenant configured.
    pub tenant: TenantId,
    /// Whether answers carry a `Server-Timing` header with the request's
    /// time and the part of it spent waiting on Microsoft (what `latchkey
    /// loadtest` reads). Default false.
    pub server_timing: bool,
}

/// One tenant's settings: `[tenants.<guid>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantConfig {
    /// A name for people; defaults to the tenant id.
    pub name: String,
    /// The module file, relative to the modules directory.
    pub module: PathBuf,
    /// The module's pinned sha256.
    pub sha256: ModuleHash,
    /// Publisher key files (relative to the modules directory); when not
    /// empty, a signature by one of them is required.
    pub publisher_keys: Vec<PathBuf>,
    /// The signature file, relative to the modules directory.
    pub signature: PathBuf,
    /// The longest Temporary Access Pass the host signs a receipt for, in
    /// minutes, whatever the module asks. Default
    /// [`DEFAULT_MAX_TAP_LIFETIME_MINUTES`]; within [`TAP_LIFETIME_MINUTES`].
    pub max_tap_lifetime_minutes: u32,
    /// The tenant's offset from UTC in minutes, for the local hour and
    /// weekday modules see. Default 0; within [`UTC_OFFSET_MINUTES`].
    pub utc_offset_minutes: i32,
    /// The tenant's Graph app registration; `latchkey serve` requires it.
    pub graph: Option<GraphSettings>,
    /// How the tenant's people sign in to Latchkey (`[tenants.<guid>.sign_in]`);
    /// `None`: no sign-in, no MFA step-up, no recovery email codes.
    pub sign_in: Option<SignInSettings>,
}

/// A tenant's sign-in settings, defaults resolved:
/// `[tenants.<guid>.sign_in]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInSettings {
    /// The app registration users sign in to. Default: the Graph
    /// `client_id`.
    pub client_id: String,
    /// Where the app's secret is read from. Default: the Graph secret when
    /// `client_id` is the Graph one, else `None` (a public client).
    pub client_secret: Option<SecretSource>,
    /// The Entra authority. Default: the Graph `authority`, else
    /// [`graph::DEFAULT_AUTHORITY`].
    pub authority: String,
    /// Where the authority sends the browser back; the MFA step-up needs it.
    /// No default.
    pub redirect_uri: Option<String>,
    /// The mailbox recovery codes are sent from (UPN or object id); without
    /// it, recovery email codes are unavailable. No default.
    pub mail_from: Option<String>,
}

/// A tenant's Graph settings: `[tenants.<guid>.graph]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphSettings {
    /// The app registration's application (client) id.
    pub client_id: String,
    /// Where the client secret is read from.
    pub client_secret: SecretSource,
    /// Default [`graph::DEFAULT_AUTHORITY`].
    pub authority: String,
    /// Default [`graph::DEFAULT_GRAPH_BASE_URL`].
    pub graph_base_url: String,
    /// Default [`graph::DEFAULT_SCOPE`].
    pub scope: String,
    /// Per attempt. Default [`graph::DEFAULT_TIMEOUT`].
    pub timeout: Duration,
    /// Default [`graph::DEFAULT_MAX_RETRIES`].
    pub max_retries: u32,
}

/// Where a secret is read from; never the configuration text itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file (resolved against the configuration's directory); surrounding
    /// whitespace, such as a final newline, is ignored.
    File(PathBuf),
    /// An environment variable, by name.
    Env(String),
}

/// Why configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Not valid TOML of the expected shape, or a value out of range.
    #[error("invalid configuration at line {line}: {message}")]
    Toml {
        /// The 1-based line the error is on.
        line: usize,
        /// What is wrong, on one line.
        message: String,
    },
    /// A file name that would leave its directory.
    #[error("tenant {tenant}: {field} {path:?} must be a relative path inside modules_dir")]
    PathEscapes {
        /// The tenant.
        tenant: TenantId,
        /// Which setting.
        field: &'static str,
        /// The offending path.
        path: PathBuf,
    },
    /// A file the configuration names (or the configuration) cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The admin token file does not hold a usable token.
    #[error("admin token file {}: {problem}", path.display())]
    AdminToken {
        /// The file.
        path: PathBuf,
        /// What is wrong, and what to do.
        problem: String,
    },
    /// `[web] tenant` names no configured tenant, or is needed and missing.
    #[error("[web] {0}")]
    WebTenant(String),
    /// `[teams] app_tenant` is needed and missing.
    #[error("[teams] {0}")]
    TeamsTenant(String),
    /// `[slack] tenant` names no configured tenant, or is needed and missing.
    #[error("[slack] {0}")]
    SlackTenant(String),
    /// A chat channel's secret (Slack's signing secret or bot token,
    /// Teams' app secret) cannot be had.
    #[error("[{table}] {what} from {from}: {problem}")]
    ChannelSecret {
        /// The table: `slack` or `teams`.
        table: &'static str,
        /// Which secret.
        what: &'static str,
        /// The file or environment variable.
        from: String,
        /// What is wrong.
        problem: String,
    },
    /// A tenant's Graph client secret cannot be had.
    #[error("tenant {tenant}: Graph client secret from {from}: {problem}")]
    GraphSecret {
        /// The tenant.
        tenant: TenantId,
        /// The file or environment variable.
        from: String,
        /// What is wrong.
        problem: String,
    },
    /// A tenant's sign-in settings cannot work (no client id to default
    /// to, an unreadable secret).
    #[error("tenant {tenant}: [sign_in] {problem}")]
    SignIn {
        /// The tenant.
        tenant: TenantId,
        /// What is wrong, and what to do.
        problem: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    host: RawHost,
    #[serde(default)]
    admin: Option<RawAdmin>,
    #[serde(default)]
    web: Option<RawWeb>,
    #[serde(default)]
    slack: Option<RawSlack>,
    #[serde(default)]
    teams: Option<RawTeams>,
    policy: RawPolicy,
    #[serde(default)]
    tenants: BTreeMap<TenantId, RawTenant>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHost {
    #[serde(default)]
    signing_key: Option<PathBuf>,
    #[serde(default)]
    trusted_keys: Vec<PathBuf>,
    #[serde(default)]
    database: Option<PathBuf>,
    #[serde(default)]
    reconcile_grace_seconds: Option<u64>,
}

/// `[admin]`, checked as it is deserialized so that a refusal names its line.
#[derive(Deserialize)]
#[serde(try_from = "RawAdminFields")]
struct RawAdmin {
    listen: SocketAddr,
    allow_remote: bool,
    token_file: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdminFields {
    #[serde(default)]
    listen: Option<String>,
    #[serde(default)]
    allow_remote: bool,
    token_file: Option<PathBuf>,
}

impl TryFrom<RawAdminFields> for RawAdmin {
    type Error = String;

    fn try_from(raw: RawAdminFields) -> Result<RawAdmin, String> {
        let listen = parse_listen(
            "admin",
            raw.listen,
            DEFAULT_ADMIN_LISTEN,
            raw.allow_remote,
            "the admin API can reload policy modules, so it",
        )?;
        let token_file = raw.token_file.ok_or_else(|| {
            "[admin] needs token_file, a file holding the bearer token \
             (create one with `openssl rand -hex 32 > admin.token`)"
                .to_owned()
        })?;
        Ok(RawAdmin {
            listen,
            allow_remote: raw.allow_remote,
            token_file,
        })
    }
}

/// `[slack]`, checked as it is deserialized so that a refusal names its line.
#[derive(Deserialize)]
#[serde(try_from = "RawSlackFields")]
struct RawSlack {
    listen: SocketAddr,
    allow_remote: bool,
    signing_secret: RawSecret,
    bot_token: RawSecret,
    api_base_url: String,
    tenant: Option<TenantId>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlackFields {
    #[serde(default)]
    listen: Option<String>,
    #[serde(default)]
    allow_remote: bool,
    #[serde(default)]
    signing_secret_file: Option<PathBuf>,
    #[serde(default)]
    signing_secret_env: Option<String>,
    #[serde(default)]
    bot_token_file: Option<PathBuf>,
    #[serde(default)]
    bot_token_env: Option<String>,
    #[serde(default)]
    api_base_url: Option<String>,
    #[serde(default)]
    tenant: Option<TenantId>,
}

/// A table's `listen`: `default` when absent; an address other than
/// loopback only with `allow_remote` (`who` says what would listen, for the
/// refusal: "it", "the admin API ..., so it").
fn parse_listen(
    table: &str,
    text: Option<String>,
    default: SocketAddr,
    allow_remote: bool,
    who: &str,
) -> Result<SocketAddr, String> {
    let listen = match text {
        None => default,
        Some(text) => text.parse::<SocketAddr>().map_err(|_| {
            let port = default.port();
            format!(
                "[{table}] listen = {text:?} is not an IP address and port \
                 (like \"127.0.0.1:{port}\" or \"[::1]:{port}\")"
            )
        })?,
    };
    if !listen.ip().is_loopback() && !allow_remote {
        return Err(format!(
            "[{table}] listen = \"{listen}\" is not a loopback address; {who} listens \
             beyond this machine only with allow_remote = true (put it behind TLS)"
        ));
    }
    Ok(listen)
}

/// Exactly one of `{name}_file` and `{name}_env` in `[table]`.
fn one_secret(
    table: &str,
    name: &str,
    file: Option<PathBuf>,
    env: Option<String>,
) -> Result<RawSecret, String> {
    match (file, env) {
        (Some(file), None) if !file.as_os_str().is_empty() => Ok(RawSecret::File(file)),
        (None, Some(var)) if valid_env_name(&var) => Ok(RawSecret::Env(var)),
        (None, Some(var)) => Err(format!(
            "[{table}] {name}_env = {var:?} is not an environment variable name"
        )),
        (Some(_), Some(_)) => Err(format!(
            "[{table}] sets both {name}_file and {name}_env; keep one"
        )),
        (Some(_), None) | (None, None) => Err(format!(
            "[{table}] needs {name}_file or {name}_env (never inline in the configuration)"
        )),
    }
}

impl TryFrom<RawSlackFields> for RawSlack {
    type Error = String;

    fn try_from(raw: RawSlackFields) -> Result<RawSlack, String> {
        let listen = parse_listen(
            "slack",
            raw.listen,
            DEFAULT_SLACK_LISTEN,
            raw.allow_remote,
            "it",
        )?;
        let signing_secret = one_secret(
            "slack",
            "signing_secret",
            raw.signing_secret_file,
            raw.signing_secret_env,
        )?;
        let bot_token = one_secret("slack", "bot_token", raw.bot_token_file, raw.bot_token_env)?;
        let api_base_url = url(raw.api_base_url, DEFAULT_SLACK_API_BASE_URL, "api_base_url")
            .map_err(|e| format!("[slack] {}", e.trim_start_matches("graph ")))?;
        Ok(RawSlack {
            listen,
            allow_remote: raw.allow_remote,
            signing_secret,
            bot_token,
            api_base_url,
            tenant: raw.tenant,
        })
    }
}

/// `[teams]`, checked as it is deserialized so that a refusal names its line.
#[derive(Deserialize)]
#[serde(try_from = "RawTeamsFields")]
struct RawTeams {
    listen: SocketAddr,
    allow_remote: bool,
    app_id: String,
    app_secret: RawSecret,
    app_tenant: Option<String>,
    authority: String,
    openid_metadata_url: String,
    service_url_hosts: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTeamsFields {
    #[serde(default)]
    listen: Option<String>,
    #[serde(default)]
    allow_remote: bool,
    #[serde(default)]
    app_id: Option<String>,
    #[serde(default)]
    app_secret_file: Option<PathBuf>,
    #[serde(default)]
    app_secret_env: Option<String>,
    #[serde(default)]
    app_tenant: Option<String>,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default)]
    openid_metadata_url: Option<String>,
    #[serde(default)]
    service_url_hosts: Option<Vec<String>>,
}

impl TryFrom<RawTeamsFields> for RawTeams {
    type Error = String;

    fn try_from(raw: RawTeamsFields) -> Result<RawTeams, String> {
        let listen = parse_listen(
            "teams",
            raw.listen,
            DEFAULT_TEAMS_LISTEN,
            raw.allow_remote,
            "it",
        )?;
        let app_id = raw
            .app_id
            .map(|id| id.trim().to_owned())
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                "[teams] needs app_id, the bot's Microsoft App ID (its app registration)".to_owned()
            })?;
        let app_secret = one_secret(
            "teams",
            "app_secret",
            raw.app_secret_file,
            raw.app_secret_env,
        )?;
        if let Some(tenant) = &raw.app_tenant
            && tenant != "botframework.com"
            && tenant.parse::<TenantId>().is_err()
        {
            return Err(format!(
                "[teams] app_tenant = {tenant:?} is neither a tenant GUID nor \"botframework.com\""
            ));
        }
        let http_url = |value: Option<String>, default: &str, field: &str| {
            url(value, default, field)
                .map_err(|e| format!("[teams] {}", e.trim_start_matches("graph ")))
        };
        let authority = http_url(raw.authority, DEFAULT_TEAMS_AUTHORITY, "authority")?;
        let openid_metadata_url = http_url(
            raw.openid_metadata_url,
            crate::teams::token::DEFAULT_OPENID_METADATA_URL,
            "openid_metadata_url",
        )?;
        let service_url_hosts = match raw.service_url_hosts {
            None => DEFAULT_TEAMS_SERVICE_HOSTS
                .iter()
                .map(|h| (*h).to_owned())
                .collect(),
            Some(hosts) => {
                if hosts.is_empty() {
                    return Err(
                        "[teams] service_url_hosts is empty; the bot could answer nobody"
                            .to_owned(),
                    );
                }
                for host in &hosts {
                    let ok = !host.is_empty()
                        && host.chars().all(|c| {
                            c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')
                        });
                    if !ok {
                        return Err(format!(
                            "[teams] service_url_hosts: {host:?} is not a host name (like \"smba.trafficmanager.net\")"
                        ));
                    }
                }
                hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect()
            }
        };
        Ok(RawTeams {
            listen,
            allow_remote: raw.allow_remote,
            app_id,
            app_secret,
            app_tenant: raw.app_tenant,
            authority,
            openid_metadata_url,
            service_url_hosts,
        })
    }
}

/// `[web]`, checked as it is deserialized so that a refusal names its line.
#[derive(Deserialize)]
#[serde(try_from = "RawWebFields")]
struct RawWeb {
    listen: SocketAddr,
    allow_remote: bool,
    tenant: Option<TenantId>,
    server_timing: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebFields {
    #[serde(default)]
    listen: Option<String>,
    #[serde(default)]
    allow_remote: bool,
    #[serde(default)]
    tenant: Option<TenantId>,
    #[serde(default)]
    server_timing: bool,
}

impl TryFrom<RawWebFields> for RawWeb {
    type Error = String;

    fn try_from(raw: RawWebFields) -> Result<RawWeb, String> {
        let listen = parse_listen(
            "web",
            raw.listen,
            DEFAULT_WEB_LISTEN,
            raw.allow_remote,
            "the web chat is a demo channel over plain HTTP, so it",
        )?;
        Ok(RawWeb {
            listen,
            allow_remote: raw.allow_remote,
            tenant: raw.tenant,
            server_timing: raw.server_timing,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    modules_dir: PathBuf,
    #[serde(default)]
    cache_dir: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    #[serde(default)]
    name: Option<String>,
    module: PathBuf,
    sha256: ModuleHash,
    #[serde(default)]
    publisher_keys: Vec<PathBuf>,
    #[serde(default)]
    signature: Option<PathBuf>,
    #[serde(default = "default_tap", deserialize_with = "tap_lifetime")]
    max_tap_lifetime_minutes: u32,
    #[serde(default, deserialize_with = "utc_offset")]
    utc_offset_minutes: i32,
    #[serde(default)]
    graph: Option<RawGraph>,
    #[serde(default)]
    sign_in: Option<RawSignIn>,
}

fn default_tap() -> u32 {
    DEFAULT_MAX_TAP_LIFETIME_MINUTES
}

fn tap_lifetime<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let minutes = i64::deserialize(d)?;
    u32::try_from(minutes)
        .ok()
        .filter(|m| TAP_LIFETIME_MINUTES.contains(m))
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "max_tap_lifetime_minutes = {minutes}: Entra accepts a Temporary Access Pass \
                 lifetime of {} to {} minutes",
                TAP_LIFETIME_MINUTES.start(),
                TAP_LIFETIME_MINUTES.end()
            ))
        })
}

fn utc_offset<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    let minutes = i64::deserialize(d)?;
    i32::try_from(minutes)
        .ok()
        .filter(|m| UTC_OFFSET_MINUTES.contains(m))
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "utc_offset_minutes = {minutes}: an offset from UTC is {} to {} minutes",
                UTC_OFFSET_MINUTES.start(),
                UTC_OFFSET_MINUTES.end()
            ))
        })
}

/// `[tenants.<guid>.graph]`, checked as it is deserialized.
#[derive(Deserialize)]
#[serde(try_from = "RawGraphFields")]
struct RawGraph {
    client_id: String,
    secret: RawSecret,
    authority: String,
    graph_base_url: String,
    scope: String,
    timeout: Duration,
    max_retries: u32,
}

enum RawSecret {
    File(PathBuf),
    Env(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGraphFields {
    client_id: String,
    #[serde(default)]
    client_secret_file: Option<PathBuf>,
    #[serde(default)]
    client_secret_env: Option<String>,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default)]
    graph_base_url: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    timeout_seconds: Option<u64>,
    #[serde(default)]
    max_retries: Option<u32>,
}

impl TryFrom<RawGraphFields> for RawGraph {
    type Error = String;

    fn try_from(raw: RawGraphFields) -> Result<RawGraph, String> {
        if raw.client_id.trim().is_empty() {
            return Err("graph client_id is empty".to_owned());
        }
        let secret = match (raw.client_secret_file, raw.client_secret_env) {
            (Some(file), None) if !file.as_os_str().is_empty() => RawSecret::File(file),
            (None, Some(name)) if valid_env_name(&name) => RawSecret::Env(name),
            (None, Some(name)) => {
                return Err(format!(
                    "graph client_secret_env = {name:?} is not an environment variable name"
                ));
            }
            (Some(_), Some(_)) => {
                return Err(
                    "graph sets both client_secret_file and client_secret_env; keep one".to_owned(),
                );
            }
            (Some(_), None) | (None, None) => {
                return Err("graph needs the client secret from client_secret_file or \
                     client_secret_env (never inline in the configuration)"
                    .to_owned());
            }
        };
        let authority = url(raw.authority, graph::DEFAULT_AUTHORITY, "authority")?;
        let graph_base_url = url(
            raw.graph_base_url,
            graph::DEFAULT_GRAPH_BASE_URL,
            "graph_base_url",
        )?;
        let scope = raw.scope.unwrap_or_else(|| graph::DEFAULT_SCOPE.to_owned());
        if scope.trim().is_empty() {
            return Err("graph scope is empty".to_owned());
        }
        let timeout = match raw.timeout_seconds {
            None => graph::DEFAULT_TIMEOUT,
            Some(0) => return Err("graph timeout_seconds must be at least 1".to_owned()),
            Some(s) if s > 600 => {
                return Err(format!(
                    "graph timeout_seconds = {s}: at most 600; a user in a chat is waiting"
                ));
            }
            Some(s) => Duration::from_secs(s),
        };
        let max_retries = match raw.max_retries {
            None => graph::DEFAULT_MAX_RETRIES,
            Some(n) if n > 10 => {
                return Err(format!("graph max_retries = {n}: at most 10"));
            }
            Some(n) => n,
        };
        Ok(RawGraph {
            client_id: raw.client_id,
            secret,
            authority,
            graph_base_url,
            scope,
            timeout,
            max_retries,
        })
    }
}

/// `[tenants.<guid>.sign_in]`, checked as it is deserialized; defaults that
/// come from the graph table are filled in by [`RawSignIn::resolve`].
#[derive(Deserialize)]
#[serde(try_from = "RawSignInFields")]
struct RawSignIn {
    client_id: Option<String>,
    secret: Option<RawSecret>,
    authority: Option<String>,
    redirect_uri: Option<String>,
    mail_from: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignInFields {
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret_file: Option<PathBuf>,
    #[serde(default)]
    client_secret_env: Option<String>,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default)]
    redirect_uri: Option<String>,
    #[serde(default)]
    mail_from: Option<String>,
}

impl TryFrom<RawSignInFields> for RawSignIn {
    type Error = String;

    fn try_from(raw: RawSignInFields) -> Result<RawSignIn, String> {
        if raw
            .client_id
            .as_deref()
            .is_some_and(|id| id.trim().is_empty())
        {
            return Err("sign_in client_id is empty".to_owned());
        }
        let secret = match (raw.client_secret_file, raw.client_secret_env) {
            (None, None) => None,
            (Some(file), None) if !file.as_os_str().is_empty() => Some(RawSecret::File(file)),
            (None, Some(name)) if valid_env_name(&name) => Some(RawSecret::Env(name)),
            (None, Some(name)) => {
                return Err(format!(
                    "sign_in client_secret_env = {name:?} is not an environment variable name"
                ));
            }
            (Some(_), Some(_)) => {
                return Err(
                    "sign_in sets both client_secret_file and client_secret_env; keep one"
                        .to_owned(),
                );
            }
            (Some(_), None) => return Err("sign_in client_secret_file is empty".to_owned()),
        };
        let authority = raw
            .authority
            .map(|a| {
                url(Some(a), graph::DEFAULT_AUTHORITY, "authority")
                    .map_err(|e| e.replacen("graph", "sign_in", 1))
            })
            .transpose()?;
        if let Some(uri) = &raw.redirect_uri {
            redirect_uri(uri)?;
        }
        if let Some(mailbox) = &raw.mail_from {
            let guid = crate::ids::canonical_guid(mailbox).is_some();
            let upn = mailbox
                .split_once('@')
                .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'));
            if mailbox.len() > 256
                || mailbox.chars().any(|c| c.is_whitespace() || c.is_control())
                || !(guid || upn)
            {
                return Err(format!(
                    "sign_in mail_from = {mailbox:?} is not a mailbox: use its user principal \
                     name (helpdesk@contoso.com) or object id"
                ));
            }
        }
        Ok(RawSignIn {
            client_id: raw.client_id,
            secret,
            authority,
            redirect_uri: raw.redirect_uri,
            mail_from: raw.mail_from,
        })
    }
}

impl RawSignIn {
    /// Fills in the defaults that come from the tenant's graph table.
    fn resolve(
        self,
        tenant: &TenantId,
        graph: Option<&GraphSettings>,
        base: &Path,
    ) -> Result<SignInSettings, ConfigError> {
        let client_id = match (self.client_id, graph) {
            (Some(id), _) => id,
            (None, Some(graph)) => graph.client_id.clone(),
            (None, None) => {
                return Err(ConfigError::SignIn {
                    tenant: tenant.clone(),
                    problem: "needs client_id, or a graph table whose client_id it defaults to"
                        .to_owned(),
                });
            }
        };
        let client_secret = match self.secret {
            Some(RawSecret::File(file)) => Some(SecretSource::File(base.join(file))),
            Some(RawSecret::Env(name)) => Some(SecretSource::Env(name)),
            None => graph
                .filter(|g| g.client_id == client_id)
                .map(|g| g.client_secret.clone()),
        };
        let authority = self
            .authority
            .or_else(|| graph.map(|g| g.authority.clone()))
            .unwrap_or_else(|| graph::DEFAULT_AUTHORITY.to_owned());
        Ok(SignInSettings {
            client_id,
            client_secret,
            authority,
            redirect_uri: self.redirect_uri,
            mail_from: self.mail_from,
        })
    }
}

/// A redirect URI: absolute, `https`, or `http` to this machine only (a
/// code in a plain-http redirect across the network could be read on the
/// way), without a fragment.
fn redirect_uri(value: &str) -> Result<(), String> {
    let refused = |why: &str| format!("sign_in redirect_uri = {value:?}: {why}");
    let url = reqwest::Url::parse(value).map_err(|e| refused(&e.to_string()))?;
    if url.fragment().is_some() {
        return Err(refused("a redirect URI has no fragment"));
    }
    let loopback = url.host_str().is_some_and(|host| {
        host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    match url.scheme() {
        "https" if url.host_str().is_some() => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(refused(
            "use https, or http to this machine only (127.0.0.1, ::1, localhost)",
        )),
    }
}

/// A base URL's syntax and scheme; the Graph client checks the rest (plain
/// http only to this machine) when it is built.
fn url(value: Option<String>, default: &str, field: &str) -> Result<String, String> {
    let Some(value) = value else {
        return Ok(default.to_owned());
    };
    match reqwest::Url::parse(&value) {
        Ok(u) if matches!(u.scheme(), "https" | "http") && u.host_str().is_some() => Ok(value),
        Ok(_) => Err(format!("graph {field} = {value:?} is not an http(s) URL")),
        Err(e) => Err(format!("graph {field} = {value:?} is not a URL: {e}")),
    }
}

/// POSIX portable names: letters, digits and `_`, not starting with a digit.
fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Config {
    /// Reads, parses and validates the configuration file at `path`;
    /// relative paths in it are taken relative to its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text, path.parent().unwrap_or(Path::new(".")))
    }

    /// Parses and validates configuration text. Relative paths are taken
    /// relative to `base` (the configuration file's directory).
    pub fn from_toml(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Toml {
            line: e
                .span()
                .and_then(|span| text.get(..span.start))
                .map_or(1, |before| before.matches('\n').count() + 1),
            message: e.message().replace('\n', " "),
        })?;
        let mut tenants = BTreeMap::new();
        for (id, t) in raw.tenants {
            let signature = t.signature.unwrap_or_else(|| {
                let mut name = t.module.clone().into_os_string();
                name.push(".sig");
                PathBuf::from(name)
            });
            inside(&id, "module", &t.module)?;
            inside(&id, "signature", &signature)?;
            for key in &t.publisher_keys {
                inside(&id, "publisher key", key)?;
            }
            let graph = t.graph.map(|g| GraphSettings {
                client_id: g.client_id,
                client_secret: match g.secret {
                    RawSecret::File(file) => SecretSource::File(base.join(file)),
                    RawSecret::Env(name) => SecretSource::Env(name),
                },
                authority: g.authority,
                graph_base_url: g.graph_base_url,
                scope: g.scope,
                timeout: g.timeout,
                max_retries: g.max_retries,
            });
            tenants.insert(
                id.clone(),
                TenantConfig {
                    name: t.name.unwrap_or_else(|| id.to_string()),
                    module: t.module,
                    sha256: t.sha256,
                    publisher_keys: t.publisher_keys,
                    signature,
                    max_tap_lifetime_minutes: t.max_tap_lifetime_minutes,
                    utc_offset_minutes: t.utc_offset_minutes,
                    sign_in: t
                        .sign_in
                        .map(|s| s.resolve(&id, graph.as_ref(), base))
                        .transpose()?,
                    graph,
                },
            );
        }
        let host = HostConfig {
            signing_key: raw.host.signing_key.map(|p| base.join(p)),
            trusted_keys: raw.host.trusted_keys.iter().map(|p| base.join(p)).collect(),
            database: base.join(
                raw.host
                    .database
                    .as_deref()
                    .unwrap_or(Path::new(DEFAULT_DATABASE)),
            ),
            reconcile_grace: raw
                .host
                .reconcile_grace_seconds
                .map_or(DEFAULT_RECONCILE_GRACE, Duration::from_secs),
        };
        let admin = raw.admin.map(|a| AdminConfig {
            listen: a.listen,
            allow_remote: a.allow_remote,
            token_file: base.join(a.token_file),
        });
        let web = raw
            .web
            .map(|w| {
                let tenant = match w.tenant {
                    Some(tenant) if tenants.contains_key(&tenant) => tenant,
                    Some(tenant) => {
                        return Err(ConfigError::WebTenant(format!(
                            "tenant = \"{tenant}\" is not configured; add a [tenants.{tenant}] \
                             table or name one that is"
                        )));
                    }
                    None => match tenants.keys().collect::<Vec<_>>().as_slice() {
                        [only] => (*only).clone(),
                        _ => {
                            return Err(ConfigError::WebTenant(format!(
                                "needs tenant = \"<tenant-id>\": the web chat serves one tenant, \
                                 and {} are configured",
                                tenants.len()
                            )));
                        }
                    },
                };
                // People sign in to the web chat through the tenant's
                // sign-in settings: without them it could serve nobody.
                if tenants.get(&tenant).is_some_and(|t| t.sign_in.is_none()) {
                    return Err(ConfigError::WebTenant(format!(
                        "tenant {tenant} has no [tenants.{tenant}.sign_in] table; the web \
                         chat's people sign in through it (add one with its redirect_uri, \
                         http://{}/callback)",
                        w.listen
                    )));
                }
                Ok(WebConfig {
                    listen: w.listen,
                    allow_remote: w.allow_remote,
                    tenant,
                    server_timing: w.server_timing,
                })
            })
            .transpose()?;
        let secret = |raw: RawSecret| match raw {
            RawSecret::File(file) => SecretSource::File(base.join(file)),
            RawSecret::Env(name) => SecretSource::Env(name),
        };
        let slack = raw
            .slack
            .map(|s| {
                let tenant = match s.tenant {
                    Some(tenant) if tenants.contains_key(&tenant) => tenant,
                    Some(tenant) => {
                        return Err(ConfigError::SlackTenant(format!(
                            "tenant = \"{tenant}\" is not configured; add a [tenants.{tenant}] \
                             table or name one that is"
                        )));
                    }
                    None => match tenants.keys().collect::<Vec<_>>().as_slice() {
                        [only] => (*only).clone(),
                        _ => {
                            return Err(ConfigError::SlackTenant(format!(
                                "needs tenant = \"<tenant-id>\": a Slack workspace maps to one \
                                 tenant, and {} are configured",
                                tenants.len()
                            )));
                        }
                    },
                };
                Ok(SlackConfig {
                    listen: s.listen,
                    allow_remote: s.allow_remote,
                    signing_secret: secret(s.signing_secret),
                    bot_token: secret(s.bot_token),
                    api_base_url: s.api_base_url,
                    tenant,
                })
            })
            .transpose()?;
        let teams = raw
            .teams
            .map(|t| {
                let app_tenant = match t.app_tenant {
                    Some(tenant) => tenant,
                    None => match tenants.keys().collect::<Vec<_>>().as_slice() {
                        [only] => only.as_str().to_owned(),
                        _ => {
                            return Err(ConfigError::TeamsTenant(format!(
                                "needs app_tenant = \"<tenant-id>\", the tenant of the bot's \
                                 app registration, as {} tenants are configured",
                                tenants.len()
                            )));
                        }
                    },
                };
                Ok(TeamsConfig {
                    listen: t.listen,
                    allow_remote: t.allow_remote,
                    app_id: t.app_id,
                    app_secret: secret(t.app_secret),
                    app_tenant,
                    authority: t.authority,
                    openid_metadata_url: t.openid_metadata_url,
                    service_url_hosts: t.service_url_hosts,
                })
            })
            .transpose()?;
        Ok(Config {
            modules_dir: base.join(raw.policy.modules_dir),
            cache_dir: raw.policy.cache_dir.map(|d| base.join(d)),
            tenants,
            host,
            admin,
            web,
            slack,
            teams,
        })
    }
}

impl AdminConfig {
    /// Reads the bearer token from [`AdminConfig::token_file`]. Surrounding
    /// whitespace (a final newline) is ignored; the token must be
    /// [`MIN_ADMIN_TOKEN_CHARS`] to [`MAX_ADMIN_TOKEN_CHARS`] visible ASCII
    /// characters, which is what an `Authorization` header can carry.
    pub fn read_token(&self) -> Result<AdminToken, ConfigError> {
        let path = &self.token_file;
        let problem = |problem: String| ConfigError::AdminToken {
            path: path.clone(),
            problem,
        };
        let text = read_bounded(path, MAX_ADMIN_TOKEN_CHARS as u64 + 64)?;
        let token = text.trim();
        if token.is_empty() {
            return Err(problem(
                "the file is empty; put a random token in it \
                 (`openssl rand -hex 32 > admin.token`)"
                    .to_owned(),
            ));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(problem(
                "the token must be visible ASCII characters only, with no spaces".to_owned(),
            ));
        }
        let chars = token.len();
        if chars < MIN_ADMIN_TOKEN_CHARS {
            return Err(problem(format!(
                "the token is {chars} characters; use at least {MIN_ADMIN_TOKEN_CHARS} \
                 (`openssl rand -hex 32` makes 64)"
            )));
        }
        if chars > MAX_ADMIN_TOKEN_CHARS {
            return Err(problem(format!(
                "the token is {chars} characters; at most {MAX_ADMIN_TOKEN_CHARS}"
            )));
        }
        warn_if_shared(path, "admin token");
        Ok(AdminToken::new(Secret::new(token)))
    }
}

impl SlackConfig {
    /// Reads the signing secret and the bot token.
    pub fn read_secrets(&self) -> Result<(Secret, Secret), ConfigError> {
        let read = |source: &SecretSource, what: &'static str| {
            source
                .read(what)
                .map_err(|(from, problem)| ConfigError::ChannelSecret {
                    table: "slack",
                    what,
                    from,
                    problem,
                })
        };
        Ok((
            read(&self.signing_secret, "signing secret")?,
            read(&self.bot_token, "bot token")?,
        ))
    }
}

impl TeamsConfig {
    /// Reads the app's client secret.
    pub fn read_secret(&self) -> Result<Secret, ConfigError> {
        self.app_secret
            .read("app secret")
            .map_err(|(from, problem)| ConfigError::ChannelSecret {
                table: "teams",
                what: "app secret",
                from,
                problem,
            })
    }
}

impl SecretSource {
    /// Reads the secret; on failure, `(where from, what is wrong)`.
    fn read(&self, what: &str) -> Result<Secret, (String, String)> {
        let (from, value) = match self {
            SecretSource::File(path) => {
                let from = format!("file {}", path.display());
                let text = read_bounded(path, MAX_SECRET_FILE_BYTES).map_err(|e| {
                    let problem = match e {
                        ConfigError::Read { source, .. } => source.to_string(),
                        other => other.to_string(),
                    };
                    (from.clone(), problem)
                })?;
                warn_if_shared(path, what);
                (from, text)
            }
            SecretSource::Env(name) => {
                let from = format!("environment variable {name}");
                let value = std::env::var(name).map_err(|e| (from.clone(), e.to_string()))?;
                (from, value)
            }
        };
        let secret = value.trim();
        if secret.is_empty() {
            return Err((from, "it is empty".to_owned()));
        }
        Ok(Secret::new(secret))
    }
}

impl GraphSettings {
    /// Reads the client secret from its file or environment variable.
    pub fn read_secret(&self, tenant: &TenantId) -> Result<Secret, ConfigError> {
        self.client_secret
            .read("Graph client secret")
            .map_err(|(from, problem)| ConfigError::GraphSecret {
                tenant: tenant.clone(),
                from,
                problem,
            })
    }

    /// The Graph client configuration for `tenant`, with the secret read.
    pub fn graph_config(&self, tenant: &TenantId) -> Result<GraphConfig, ConfigError> {
        let mut config = GraphConfig::new(
            tenant.clone(),
            self.client_id.clone(),
            self.read_secret(tenant)?,
        );
        config.authority = self.authority.clone();
        config.graph_base_url = self.graph_base_url.clone();
        config.scope = self.scope.clone();
        config.timeout = self.timeout;
        config.max_retries = self.max_retries;
        Ok(config)
    }
}

impl SignInSettings {
    /// The OIDC client for `tenant`'s sign-ins, with the secret read.
    pub fn oidc_client(&self, tenant: &TenantId) -> Result<OidcClient, ConfigError> {
        let problem = |problem: String| ConfigError::SignIn {
            tenant: tenant.clone(),
            problem,
        };
        let secret = self
            .client_secret
            .as_ref()
            .map(|source| {
                source
                    .read("sign-in client secret")
                    .map_err(|(from, why)| problem(format!("client secret from {from}: {why}")))
            })
            .transpose()?;
        OidcClient::new(
            &self.authority,
            tenant.clone(),
            self.client_id.clone(),
            secret,
        )
        .map_err(|e| problem(e.to_string()))
    }
}

/// Reads a small text file, refusing one larger than `limit` bytes.
fn read_bounded(path: &Path, limit: u64) -> Result<String, ConfigError> {
    use std::io::Read as _;
    let read_error = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut text = String::new();
    file.take(limit + 1)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    if text.len() as u64 > limit {
        return Err(read_error(std::io::Error::other(format!(
            "larger than {limit} bytes; is this the right file?"
        ))));
    }
    Ok(text)
}

/// Secrets belong in files only the service can read; say so when others can.
fn warn_if_shared(path: &Path, what: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                file = %path.display(),
                "the {what} file is readable by other users; chmod 600 it"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, what);
}

/// Refuses absolute paths and `..`: the directory handle would refuse them
/// too, but a clear error at load time beats a refusal at the first request.
fn inside(tenant: &TenantId, field: &'static str, path: &Path) -> Result<(), ConfigError> {
    let ok = !path.as_os_str().is_empty()
        && path.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::PathEscapes {
            tenant: tenant.clone(),
            field,
            path: path.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

    fn config(tenant_body: &str) -> Result<Config, ConfigError> {
        let text =
            format!("[policy]\nmodules_dir = \"mods\"\n\n[tenants.{TENANT}]\n{tenant_body}\n");
        Config::from_toml(&text, Path::new("/etc/latchkey"))
    }

    fn pinned() -> String {
        format!(
            "module = \"m.wasm\"\nsha256 = \"{}\"\n",
            ModuleHash::of(b"m")
        )
    }

    fn tenant(c: &Config) -> &TenantConfig {
        &c.tenants[&TENANT.parse::<TenantId>().unwrap()]
    }

    /// The whole file with `extra` appended; for tables other than the tenant's.
    fn with(extra: &str) -> Result<Config, ConfigError> {
        let text = format!(
            "[policy]\nmodules_dir = \"mods\"\n\n[tenants.{TENANT}]\n{}\n{extra}\n",
            pinned()
        );
        Config::from_toml(&text, Path::new("/etc/latchkey"))
    }

    fn toml_error(result: Result<Config, ConfigError>) -> (usize, String) {
        match result {
            Err(ConfigError::Toml { line, message }) => (line, message),
            other => panic!("expected a TOML error, got {other:?}"),
        }
    }

    #[test]
    fn a_tenant_pins_a_module_and_defaults_its_signature_file() {
        let hash = ModuleHash::of(b"m");
        let c = config(&format!("module = \"contoso.wasm\"\nsha256 = \"{hash}\"")).unwrap();
        assert_eq!(c.modules_dir, Path::new("/etc/latchkey/mods"));
        let t = &c.tenants[&TENANT.parse::<TenantId>().unwrap()];
        assert_eq!(t.sha256, hash);
        assert_eq!(t.signature, Path::new("contoso.wasm.sig"));
        assert!(t.publisher_keys.is_empty());
    }

    #[test]
    fn bad_hashes_unknown_fields_and_escaping_paths_are_refused() {
        let hash = ModuleHash::of(b"m");
        let bad_hash = config("module = \"m.wasm\"\nsha256 = \"ABC\"").unwrap_err();
        assert!(
            bad_hash.to_string().contains("64 lowercase hex"),
            "{bad_hash}"
        );
        let unknown = config(&format!(
            "module = \"m.wasm\"\nsha256 = \"{hash}\"\nallow_all = true"
        ))
        .unwrap_err();
        assert!(unknown.to_string().contains("allow_all"), "{unknown}");
        let escape = config(&format!(
            "module = \"../../etc/passwd\"\nsha256 = \"{hash}\""
        ))
        .unwrap_err();
        assert!(
            matches!(escape, ConfigError::PathEscapes { .. }),
            "{escape}"
        );
        let absolute =
            config(&format!("module = \"/tmp/m.wasm\"\nsha256 = \"{hash}\"")).unwrap_err();
        assert!(matches!(absolute, ConfigError::PathEscapes { .. }));
    }

    #[test]
    fn defaults_when_only_policy_and_a_pin_are_given() {
        let c = config(&pinned()).unwrap();
        assert_eq!(c.host.signing_key, None);
        assert!(c.host.trusted_keys.is_empty());
        assert_eq!(c.host.database, Path::new("/etc/latchkey/latchkey.db"));
        assert_eq!(c.host.reconcile_grace, DEFAULT_RECONCILE_GRACE);
        assert!(c.admin.is_none(), "no [admin], no admin API");
        let t = tenant(&c);
        assert_eq!(t.name, TENANT);
        assert_eq!(t.max_tap_lifetime_minutes, 60);
        assert_eq!(t.utc_offset_minutes, 0);
        assert!(t.graph.is_none());
    }

    #[test]
    fn every_new_key_is_read() {
        let c = with(
            "[tenants.72f988bf-86f1-41af-91ab-2d7cd011db47.graph]\n\
             client_id = \"app\"\nclient_secret_file = \"secrets/contoso\"\n\
             authority = \"http://127.0.0.1:7710\"\n\
             graph_base_url = \"http://127.0.0.1:7710/v1.0\"\n\
             scope = \"https://graph.microsoft.us/.default\"\n\
             timeout_seconds = 3\nmax_retries = 1\n\n\
             [host]\nsigning_key = \"keys/host.pem\"\n\
             trusted_keys = [\"keys/old.pub.pem\", \"/abs/older.pub.pem\"]\n\
             database = \"/var/lib/latchkey/audit.db\"\nreconcile_grace_seconds = 60\n\n\
             [admin]\nlisten = \"[::1]:9000\"\ntoken_file = \"admin.token\"\n",
        )
        .unwrap();
        assert_eq!(
            c.host.signing_key.as_deref(),
            Some(Path::new("/etc/latchkey/keys/host.pem"))
        );
        assert_eq!(
            c.host.trusted_keys,
            vec![
                PathBuf::from("/etc/latchkey/keys/old.pub.pem"),
                PathBuf::from("/abs/older.pub.pem")
            ]
        );
        assert_eq!(c.host.database, Path::new("/var/lib/latchkey/audit.db"));
        assert_eq!(c.host.reconcile_grace, Duration::from_secs(60));
        let admin = c.admin.as_ref().unwrap();
        assert_eq!(admin.listen, "[::1]:9000".parse().unwrap());
        assert!(!admin.allow_remote);
        assert_eq!(admin.token_file, Path::new("/etc/latchkey/admin.token"));
        let g = tenant(&c).graph.clone().unwrap();
        assert_eq!(g.client_id, "app");
        assert_eq!(
            g.client_secret,
            SecretSource::File("/etc/latchkey/secrets/contoso".into())
        );
        assert_eq!(g.authority, "http://127.0.0.1:7710");
        assert_eq!(g.graph_base_url, "http://127.0.0.1:7710/v1.0");
        assert_eq!(g.scope, "https://graph.microsoft.us/.default");
        assert_eq!(g.timeout, Duration::from_secs(3));
        assert_eq!(g.max_retries, 1);

        let limits = config(&format!(
            "{}max_tap_lifetime_minutes = 480\nutc_offset_minutes = -300\n",
            pinned()
        ))
        .unwrap();
        assert_eq!(tenant(&limits).max_tap_lifetime_minutes, 480);
        assert_eq!(tenant(&limits).utc_offset_minutes, -300);
    }

    #[test]
    fn graph_and_admin_defaults() {
        let c = with(&format!(
            "[tenants.{TENANT}.graph]\nclient_id = \"app\"\nclient_secret_env = \"CONTOSO_SECRET\"\n\
             [admin]\ntoken_file = \"t\"\n"
        ))
        .unwrap();
        let g = tenant(&c).graph.clone().unwrap();
        assert_eq!(g.client_secret, SecretSource::Env("CONTOSO_SECRET".into()));
        assert_eq!(g.authority, graph::DEFAULT_AUTHORITY);
        assert_eq!(g.graph_base_url, graph::DEFAULT_GRAPH_BASE_URL);
        assert_eq!(g.scope, graph::DEFAULT_SCOPE);
        assert_eq!(g.timeout, graph::DEFAULT_TIMEOUT);
        assert_eq!(g.max_retries, graph::DEFAULT_MAX_RETRIES);
        let admin = c.admin.unwrap();
        assert_eq!(admin.listen, DEFAULT_ADMIN_LISTEN);
        assert_eq!(admin.listen.to_string(), "127.0.0.1:7720");
    }

    #[test]
    fn unknown_keys_are_refused_in_every_table_with_their_line() {
        for (extra, key) in [
            ("[host]\nsigning_kee = \"h.pem\"", "signing_kee"),
            ("[admin]\ntoken_file = \"t\"\nport = 1", "port"),
            (
                &*format!(
                    "[tenants.{TENANT}.graph]\nclient_id = \"a\"\nclient_secret_env = \"S\"\nsecret = \"x\""
                ),
                "secret",
            ),
            ("[server]\nx = 1", "server"),
        ] {
            let (line, message) = toml_error(with(extra));
            assert!(message.contains(key), "{extra}: {message}");
            assert!(line >= 6, "{extra}: line {line}");
        }
    }

    #[test]
    fn the_client_secret_comes_from_exactly_one_source() {
        let graph = |body: &str| {
            with(&format!(
                "[tenants.{TENANT}.graph]\nclient_id = \"a\"\n{body}"
            ))
        };
        let (line, both) = toml_error(graph(
            "client_secret_file = \"s\"\nclient_secret_env = \"S\"",
        ));
        assert!(both.contains("both"), "{both}");
        assert!(line >= 6, "line {line}");
        let (_, neither) = toml_error(graph(""));
        assert!(
            neither.contains("client_secret_file or client_secret_env"),
            "{neither}"
        );
        let (_, inline) = toml_error(graph("client_secret = \"hunter2\""));
        assert!(inline.contains("client_secret"), "{inline}");
        let (_, bad_env) = toml_error(graph("client_secret_env = \"NOT A NAME\""));
        assert!(bad_env.contains("environment variable"), "{bad_env}");
        let (_, url) = toml_error(graph("client_secret_env = \"S\"\nauthority = \"ftp://x\""));
        assert!(url.contains("authority"), "{url}");
        let (_, timeout) = toml_error(graph("client_secret_env = \"S\"\ntimeout_seconds = 0"));
        assert!(timeout.contains("timeout_seconds"), "{timeout}");
    }

    #[test]
    fn a_remote_admin_address_needs_allow_remote() {
        let (line, message) = toml_error(with(
            "[admin]\nlisten = \"0.0.0.0:7720\"\ntoken_file = \"t\"",
        ));
        assert!(message.contains("allow_remote"), "{message}");
        assert_eq!(line, 8, "the [admin] table's line");
        let allowed =
            with("[admin]\nlisten = \"0.0.0.0:7720\"\nallow_remote = true\ntoken_file = \"t\"")
                .unwrap();
        assert!(allowed.admin.unwrap().allow_remote);
        let (_, no_token) = toml_error(with("[admin]\nlisten = \"127.0.0.1:1\""));
        assert!(no_token.contains("token_file"), "{no_token}");
        let (_, name) = toml_error(with(
            "[admin]\nlisten = \"localhost:7720\"\ntoken_file = \"t\"",
        ));
        assert!(name.contains("IP address and port"), "{name}");
    }

    #[test]
    fn tap_maximum_and_utc_offset_are_held_to_their_ranges() {
        for bad in [0, 9, 43_201, -1] {
            let (line, message) = toml_error(config(&format!(
                "{}max_tap_lifetime_minutes = {bad}",
                pinned()
            )));
            assert!(message.contains("10 to 43200"), "{bad}: {message}");
            assert_eq!(line, 7, "{bad}");
        }
        for ok in [10, 43_200] {
            let c = config(&format!("{}max_tap_lifetime_minutes = {ok}", pinned())).unwrap();
            assert_eq!(tenant(&c).max_tap_lifetime_minutes, ok);
        }
        let (_, offset) = toml_error(config(&format!("{}utc_offset_minutes = 900", pinned())));
        assert!(offset.contains("-720 to 840"), "{offset}");
    }

    /// A tenant's sign-in table, which the web chat needs.
    fn sign_in() -> String {
        format!("[tenants.{TENANT}.sign_in]\nclient_id = \"web\"\n")
    }

    #[test]
    fn slack_needs_one_source_per_secret_and_defaults_its_url_listen_and_tenant() {
        assert!(with("").unwrap().slack.is_none(), "no table, no Slack");
        let slack =
            with("[slack]\nsigning_secret_file = \"s.secret\"\nbot_token_env = \"SLACK_BOT\"\n")
                .unwrap()
                .slack
                .unwrap();
        assert_eq!(slack.listen, DEFAULT_SLACK_LISTEN);
        assert_eq!(slack.api_base_url, DEFAULT_SLACK_API_BASE_URL);
        assert_eq!(slack.tenant, TENANT.parse().unwrap());
        assert_eq!(
            slack.signing_secret,
            SecretSource::File(PathBuf::from("/etc/latchkey/s.secret"))
        );
        assert_eq!(slack.bot_token, SecretSource::Env("SLACK_BOT".to_owned()));
        let (_, both) = toml_error(with(
            "[slack]\nsigning_secret_file = \"s\"\nsigning_secret_env = \"S\"\nbot_token_env = \"B\"",
        ));
        assert!(both.contains("keep one"), "{both}");
        let (_, neither) = toml_error(with("[slack]\nbot_token_env = \"B\""));
        assert!(
            neither.contains("signing_secret_file or signing_secret_env"),
            "{neither}"
        );
        let (_, inline) = toml_error(with(
            "[slack]\nsigning_secret_env = \"S\"\nbot_token = \"xoxb-1\"",
        ));
        assert!(inline.contains("unknown field"), "{inline}");
        let (_, remote) = toml_error(with(
            "[slack]\nsigning_secret_env = \"S\"\nbot_token_env = \"B\"\nlisten = \"0.0.0.0:7702\"",
        ));
        assert!(remote.contains("allow_remote"), "{remote}");
        let (_, url) = toml_error(with(
            "[slack]\nsigning_secret_env = \"S\"\nbot_token_env = \"B\"\napi_base_url = \"ftp://x\"",
        ));
        assert!(url.starts_with("[slack] api_base_url"), "{url}");
        let other = "11111111-2222-3333-4444-555555555555";
        let unknown = with(&format!(
            "[slack]\nsigning_secret_env = \"S\"\nbot_token_env = \"B\"\ntenant = \"{other}\""
        ))
        .unwrap_err();
        assert!(matches!(unknown, ConfigError::SlackTenant(_)), "{unknown}");
    }

    #[test]
    fn teams_needs_an_app_id_and_one_secret_source_and_defaults_the_rest() {
        assert!(with("").unwrap().teams.is_none(), "no table, no Teams");
        let teams = with("[teams]\napp_id = \"bot-1\"\napp_secret_file = \"t.secret\"\n")
            .unwrap()
            .teams
            .unwrap();
        assert_eq!(teams.listen, DEFAULT_TEAMS_LISTEN);
        assert_eq!(teams.app_tenant, TENANT);
        assert_eq!(teams.authority, DEFAULT_TEAMS_AUTHORITY);
        assert_eq!(
            teams.openid_metadata_url,
            crate::teams::token::DEFAULT_OPENID_METADATA_URL
        );
        assert_eq!(teams.service_url_hosts, DEFAULT_TEAMS_SERVICE_HOSTS);
        assert_eq!(
            teams.app_secret,
            SecretSource::File(PathBuf::from("/etc/latchkey/t.secret"))
        );
        let refused = |extra: &str| toml_error(with(&format!("[teams]\n{extra}"))).1;
        assert!(refused("app_secret_env = \"S\"").contains("needs app_id"));
        assert!(refused("app_id = \"b\"").contains("app_secret_file or app_secret_env"));
        assert!(refused("app_id = \"b\"\napp_secret = \"x\"").contains("unknown field"));
        assert!(
            refused("app_id = \"b\"\napp_secret_env = \"S\"\nlisten = \"0.0.0.0:3978\"")
                .contains("allow_remote")
        );
        assert!(
            refused("app_id = \"b\"\napp_secret_env = \"S\"\napp_tenant = \"contoso\"")
                .contains("app_tenant")
        );
        assert!(
            refused("app_id = \"b\"\napp_secret_env = \"S\"\nservice_url_hosts = []")
                .contains("empty")
        );
        assert!(
            refused("app_id = \"b\"\napp_secret_env = \"S\"\nservice_url_hosts = [\"a/b\"]")
                .contains("not a host name")
        );
        let legacy = with(
            "[teams]\napp_id = \"b\"\napp_secret_env = \"S\"\napp_tenant = \"botframework.com\"\n\
             service_url_hosts = [\"LocalHost\"]",
        )
        .unwrap()
        .teams
        .unwrap();
        assert_eq!(legacy.app_tenant, "botframework.com");
        assert_eq!(legacy.service_url_hosts, ["localhost"]);
    }

    #[test]
    fn the_web_chat_defaults_to_loopback_and_the_only_tenant() {
        assert!(with("").unwrap().web.is_none(), "no table, no web chat");
        let web = with(&format!("{}[web]\n", sign_in())).unwrap().web.unwrap();
        assert_eq!(web.listen, DEFAULT_WEB_LISTEN);
        assert_eq!(web.listen.to_string(), "127.0.0.1:7700");
        assert_eq!(web.tenant, TENANT.parse().unwrap());
        assert!(!web.allow_remote);
        let named = with(&format!(
            "{}[web]\nlisten = \"[::1]:8000\"\ntenant = \"{TENANT}\"\n",
            sign_in()
        ))
        .unwrap()
        .web
        .unwrap();
        assert_eq!(named.listen, "[::1]:8000".parse().unwrap());
        assert_eq!(named.tenant, TENANT.parse().unwrap());
    }

    #[test]
    fn the_web_chat_needs_a_configured_tenant_and_loopback() {
        let other = "0c1d2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5";
        let unknown = with(&format!("[web]\ntenant = \"{other}\"\n")).unwrap_err();
        assert!(
            matches!(&unknown, ConfigError::WebTenant(m) if m.contains(other)),
            "{unknown}"
        );
        let two = format!(
            "[policy]\nmodules_dir = \"m\"\n[tenants.{TENANT}]\n{p}[tenants.{other}]\n{p}[web]\n",
            p = pinned()
        );
        let ambiguous = Config::from_toml(&two, Path::new("/")).unwrap_err();
        assert!(
            ambiguous.to_string().contains("needs tenant"),
            "{ambiguous}"
        );
        let (line, remote) = toml_error(with("[web]\nlisten = \"0.0.0.0:7700\""));
        assert!(remote.contains("allow_remote"), "{remote}");
        assert_eq!(line, 8, "the [web] table's line");
        assert!(
            with(&format!(
                "{}[web]\nlisten = \"0.0.0.0:7700\"\nallow_remote = true",
                sign_in()
            ))
            .is_ok()
        );
        let no_sign_in = with("[web]\n").unwrap_err();
        assert!(
            matches!(&no_sign_in, ConfigError::WebTenant(m) if m.contains("sign_in")),
            "{no_sign_in}"
        );
        let (_, typo) = toml_error(with("[web]\nport = 7700"));
        assert!(typo.contains("port"), "{typo}");
        let (_, name) = toml_error(with("[web]\nlisten = \"localhost:7700\""));
        assert!(name.contains("IP address and port"), "{name}");
        let (_, bad_id) = toml_error(with("[web]\ntenant = \"contoso\""));
        assert!(bad_id.contains("contoso"), "{bad_id}");
    }

    fn admin_with_token(text: &[u8]) -> Result<AdminToken, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        std::fs::write(&path, text).unwrap();
        AdminConfig {
            listen: DEFAULT_ADMIN_LISTEN,
            allow_remote: false,
            token_file: path,
        }
        .read_token()
    }

    #[test]
    fn the_admin_token_must_be_long_visible_and_present() {
        let good = "0123456789abcdef0123456789abcdef";
        let token = admin_with_token(format!("{good}\n").as_bytes()).unwrap();
        assert!(
            token.matches(good.as_bytes()),
            "the final newline is not part of it"
        );
        for (text, says) in [
            (&b""[..], "empty"),
            (b"  \n", "empty"),
            (b"0123456789abcdef0123456789abcde", "at least 32"),
            (b"0123456789abcdef 0123456789abcdef", "visible ASCII"),
            (
                "0123456789abcdef0123456789abcdéf".as_bytes(),
                "visible ASCII",
            ),
        ] {
            let err = admin_with_token(text).unwrap_err();
            assert!(
                matches!(err, ConfigError::AdminToken { .. }) && err.to_string().contains(says),
                "{text:?}: {err}"
            );
        }
        let missing = AdminConfig {
            listen: DEFAULT_ADMIN_LISTEN,
            allow_remote: false,
            token_file: "/nonexistent/latchkey/admin.token".into(),
        }
        .read_token()
        .unwrap_err();
        assert!(matches!(missing, ConfigError::Read { .. }), "{missing}");
        let huge = admin_with_token(&vec![b'a'; 5000]).unwrap_err();
        assert!(huge.to_string().contains("larger than"), "{huge}");
    }

    #[test]
    fn graph_secrets_are_read_from_their_source() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s"), "s3cret-value\n").unwrap();
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let tenant_id: TenantId = TENANT.parse().unwrap();
        let settings = |source| GraphSettings {
            client_id: "app".into(),
            client_secret: source,
            authority: graph::DEFAULT_AUTHORITY.into(),
            graph_base_url: graph::DEFAULT_GRAPH_BASE_URL.into(),
            scope: graph::DEFAULT_SCOPE.into(),
            timeout: Duration::from_secs(7),
            max_retries: 2,
        };
        let from_file = settings(SecretSource::File(dir.path().join("s")));
        assert_eq!(
            from_file.read_secret(&tenant_id).unwrap().expose(),
            "s3cret-value"
        );
        let graph_config = from_file.graph_config(&tenant_id).unwrap();
        assert_eq!(graph_config.timeout, Duration::from_secs(7));
        assert_eq!(graph_config.max_retries, 2);
        assert_eq!(graph_config.client_id, "app");
        assert_eq!(graph_config.tenant_id, tenant_id);

        let empty = settings(SecretSource::File(dir.path().join("empty")))
            .read_secret(&tenant_id)
            .unwrap_err();
        assert!(empty.to_string().contains("empty"), "{empty}");
        let missing = settings(SecretSource::File(dir.path().join("nope")))
            .read_secret(&tenant_id)
            .unwrap_err();
        assert!(
            matches!(missing, ConfigError::GraphSecret { .. }),
            "{missing}"
        );
        // PATH is set wherever tests run; the other name is not.
        assert!(
            settings(SecretSource::Env("PATH".into()))
                .read_secret(&tenant_id)
                .is_ok()
        );
        let unset = settings(SecretSource::Env("LATCHKEY_TEST_UNSET_7F3A9C".into()))
            .read_secret(&tenant_id)
            .unwrap_err();
        assert!(
            unset.to_string().contains("LATCHKEY_TEST_UNSET_7F3A9C"),
            "{unset}"
        );
    }

    #[test]
    fn sign_in_defaults_to_the_graph_app_and_is_absent_without_its_table() {
        let c = with(&format!(
            "[tenants.{TENANT}.graph]\nclient_id = \"app\"\nclient_secret_env = \"CONTOSO_SECRET\"\n\
             authority = \"http://127.0.0.1:7710\"\n\
             [tenants.{TENANT}.sign_in]\nredirect_uri = \"http://127.0.0.1:7700/callback\"\n"
        ))
        .unwrap();
        let s = tenant(&c).sign_in.clone().unwrap();
        assert_eq!(s.client_id, "app");
        assert_eq!(
            s.client_secret,
            Some(SecretSource::Env("CONTOSO_SECRET".into())),
            "the Graph app's secret"
        );
        assert_eq!(s.authority, "http://127.0.0.1:7710");
        assert_eq!(
            s.redirect_uri.as_deref(),
            Some("http://127.0.0.1:7700/callback")
        );
        assert_eq!(s.mail_from, None);
        assert!(tenant(&config(&pinned()).unwrap()).sign_in.is_none());
        let example = Config::from_toml(
            include_str!("../latchkey.example.toml"),
            Path::new("/etc/latchkey"),
        )
        .unwrap();
        let documented = example
            .tenants
            .values()
            .find_map(|t| t.sign_in.clone())
            .unwrap();
        assert!(documented.redirect_uri.is_some() && documented.mail_from.is_some());

        // Another app: its own secret, or none (a public client).
        let own = with(&format!(
            "[tenants.{TENANT}.graph]\nclient_id = \"app\"\nclient_secret_env = \"S\"\n\
             [tenants.{TENANT}.sign_in]\nclient_id = \"web\"\nclient_secret_file = \"web.secret\"\n\
             authority = \"https://login.microsoftonline.us\"\nmail_from = \"helpdesk@contoso.com\"\n"
        ))
        .unwrap();
        let s = tenant(&own).sign_in.clone().unwrap();
        assert_eq!(s.client_id, "web");
        assert_eq!(
            s.client_secret,
            Some(SecretSource::File("/etc/latchkey/web.secret".into()))
        );
        assert_eq!(s.authority, "https://login.microsoftonline.us");
        assert_eq!(s.mail_from.as_deref(), Some("helpdesk@contoso.com"));
        let public = with(&format!(
            "[tenants.{TENANT}.graph]\nclient_id = \"app\"\nclient_secret_env = \"S\"\n\
             [tenants.{TENANT}.sign_in]\nclient_id = \"web\"\n"
        ))
        .unwrap();
        let s = tenant(&public).sign_in.clone().unwrap();
        assert_eq!(s.client_secret, None);
        assert_eq!(s.authority, graph::DEFAULT_AUTHORITY);
    }

    #[test]
    fn sign_in_refuses_what_cannot_work() {
        let sign_in = |body: &str| with(&format!("[tenants.{TENANT}.sign_in]\n{body}"));
        for (body, says) in [
            (
                "client_id = \"a\"\nredirect_uri = \"http://chat.example/callback\"",
                "http to this machine only",
            ),
            (
                "client_id = \"a\"\nredirect_uri = \"https://chat.example/cb#x\"",
                "fragment",
            ),
            (
                "client_id = \"a\"\nredirect_uri = \"/callback\"",
                "redirect_uri",
            ),
            ("client_id = \"a\"\nmail_from = \"helpdesk\"", "mailbox"),
            (
                "client_id = \"a\"\nmail_from = \"help desk@contoso.com\"",
                "mailbox",
            ),
            (
                "client_id = \"a\"\nclient_secret_file = \"s\"\nclient_secret_env = \"S\"",
                "both",
            ),
            ("client_id = \"a\"\nauthority = \"ftp://x\"", "authority"),
            ("client_id = \" \"", "client_id"),
            ("client_id = \"a\"\nredirect = \"x\"", "redirect"),
        ] {
            let (line, message) = toml_error(sign_in(body));
            assert!(message.contains(says), "{body}: {message}");
            assert!(line >= 6, "{body}: line {line}");
        }
        let no_client = sign_in("redirect_uri = \"http://localhost:7700/callback\"").unwrap_err();
        assert!(
            matches!(no_client, ConfigError::SignIn { .. })
                && no_client.to_string().contains("client_id"),
            "{no_client}"
        );
        let guid_mailbox =
            sign_in(&format!("client_id = \"a\"\nmail_from = \"{TENANT}\"")).unwrap();
        assert!(tenant(&guid_mailbox).sign_in.is_some());
    }

    #[test]
    fn the_sign_in_client_reads_its_secret() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s"), "web-secret\n").unwrap();
        let tenant_id: TenantId = TENANT.parse().unwrap();
        let settings = SignInSettings {
            client_id: "web".into(),
            client_secret: Some(SecretSource::File(dir.path().join("s"))),
            authority: "http://127.0.0.1:7710".into(),
            redirect_uri: None,
            mail_from: None,
        };
        let client = settings.oidc_client(&tenant_id).unwrap();
        assert_eq!(client.client_id(), "web");
        assert_eq!(
            client.issuer(),
            format!("http://127.0.0.1:7710/{TENANT}/v2.0")
        );
        let missing = SignInSettings {
            client_secret: Some(SecretSource::File(dir.path().join("nope"))),
            ..settings.clone()
        }
        .oidc_client(&tenant_id)
        .unwrap_err();
        assert!(matches!(missing, ConfigError::SignIn { .. }), "{missing}");
        let remote = SignInSettings {
            authority: "http://login.example".into(),
            ..settings
        }
        .oidc_client(&tenant_id)
        .unwrap_err();
        assert!(remote.to_string().contains("plain http"), "{remote}");
    }

    #[test]
    fn the_example_file_parses_and_documents_the_defaults() {
        let text = include_str!("../latchkey.example.toml");
        let c = Config::from_toml(text, Path::new("/etc/latchkey")).unwrap();
        assert!(!c.tenants.is_empty());
        assert!(c.host.signing_key.is_some());
        assert_eq!(
            c.admin.as_ref().map(|a| a.listen),
            Some(DEFAULT_ADMIN_LISTEN)
        );
        assert_eq!(c.web.as_ref().map(|w| w.listen), Some(DEFAULT_WEB_LISTEN));
        for default in [
            "7720",
            "7700",
            "7702",
            "3978",
            DEFAULT_SLACK_API_BASE_URL,
            DEFAULT_TEAMS_AUTHORITY,
            crate::teams::token::DEFAULT_OPENID_METADATA_URL,
            DEFAULT_DATABASE,
            graph::DEFAULT_AUTHORITY,
            graph::DEFAULT_GRAPH_BASE_URL,
            "max_tap_lifetime_minutes = 60",
            "utc_offset_minutes = 0",
            "reconcile_grace_seconds = 900",
            "timeout_seconds = 10",
            "max_retries = 4",
        ] {
            assert!(
                text.contains(default),
                "the example does not mention {default}"
            );
        }
        for host in DEFAULT_TEAMS_SERVICE_HOSTS {
            assert!(text.contains(host), "the example does not mention {host}");
        }
        // The commented-out [teams] table parses once uncommented.
        let teams: String = text
            .lines()
            .skip_while(|l| *l != "# [teams]")
            .take_while(|l| l.starts_with('#'))
            .filter(|l| !l.starts_with("# #"))
            .map(|l| format!("{}\n", l.trim_start_matches("# ")))
            .collect();
        assert!(teams.starts_with("[teams]"), "{teams}");
        let with_teams = text.replacen("[policy]", &format!("{teams}\n[policy]"), 1);
        let parsed = Config::from_toml(&with_teams, Path::new("/etc/latchkey")).unwrap();
        assert_eq!(parsed.teams.map(|t| t.listen), Some(DEFAULT_TEAMS_LISTEN));
    }
}
