//! `latchkey demo`: the one-command first run. The emulator with the demo
//! tenant (Contoso), a throwaway configuration pointing the host at it, the
//! service with the default policy, the conversation engine and the web
//! chat, all on loopback.
//!
//! This is the one place that starts both the emulator and the agent side.
//! It only hands the emulator's address to the configuration and reads the
//! seed's cast for the welcome text; the two still meet over HTTP only,
//! exactly as the agent meets Microsoft's endpoints.
//!
//! The configuration lives in a temporary directory with a fresh host key
//! and its own audit database: everything is gone when the demo stops.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::keys;
use crate::policy::ModuleHash;
use crate::policy::build::{self, BuildError, BuildOptions};
use crate::service::{Service, ServiceError};
use crate::sim::{self, Sim};
use crate::tenant::TenantId;
use crate::web::WebChat;

/// The web chat's default port in the demo (as `[web] listen`'s default).
pub const DEFAULT_PORT: u16 = 7700;
/// The emulator's default port in the demo (as `latchkey sim`'s).
pub const DEFAULT_SIM_PORT: u16 = 7710;
/// The mailbox recovery codes are sent from: the demo tenant has no shared
/// mailbox, so its IT service desk lead's.
pub const MAIL_FROM: &str = "johanna.lorenz@contoso.com";

/// The demo tenant's people and what each shows, in the README's order.
/// Names and passwords are read from the seed itself.
const CAST: &[(&str, &str)] = &[
    (
        "adele.vance@contoso.com",
        "1. forgot password, MFA available: say \"I forgot my password\"",
    ),
    (
        "alex.wilber@contoso.com",
        "2. lost MFA device: \"I lost my phone\" (his manager is Megan Bowen)",
    ),
    (
        "henrietta.mueller@contoso.com",
        "3. locked out (sign in with \"Use the Authenticator app instead\"): \"I'm locked out\"",
    ),
    (
        "joni.sherman@contoso.com",
        "3. locked out, synced from on-premises AD: explained, escalated",
    ),
    (
        "grady.archie@contoso.com",
        "4. password expired (sign in with \"Use the Authenticator app instead\"): \"my password expired\"",
    ),
    (
        "lidia.holloway@contoso.com",
        "5. blocked by Conditional Access: \"I can't log in\"",
    ),
    (
        "isaiah.langer@contoso.com",
        "6. asks a password for his contractor: \"reset lee.gu's password\"",
    ),
    (
        "megan.bowen@contoso.com",
        "7. just mistyped; also Alex's manager, who confirms him",
    ),
    (
        "nestor.wilke@contoso.com",
        "a privileged account (Global Administrator): routed for approval",
    ),
    (
        "christie.cline@contoso.com",
        "a disabled account: escalated",
    ),
    ("lynne.robbins@contoso.com", "Adele's manager"),
];

/// Why the demo could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// A port is taken or not allowed.
    #[error("cannot listen on {addr}: {source}; pass --port 0 and --sim-port 0 for free ports")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The demo tenant did not load.
    #[error("the demo tenant: {0}")]
    Seed(#[from] sim::seed::SeedError),
    /// The default policy could not be found or built.
    #[error("building the default policy: {0}")]
    Build(#[from] BuildError),
    /// The default policy's crate is not where the demo looks.
    #[error(
        "cannot find the default policy's crate (policies/default); run the demo from the \
         repository's root, or pass --module FILE"
    )]
    NoPolicy,
    /// The throwaway configuration could not be written.
    #[error("writing the demo's configuration in {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The host key could not be made.
    #[error("the demo's host key: {0}")]
    Key(String),
    /// The service did not start.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The web chat stopped with an error.
    #[error("the web chat stopped: {0}")]
    Serve(#[source] std::io::Error),
}

/// What to start.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// The web chat's port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// The emulator's port on 127.0.0.1; 0 picks a free one.
    pub sim_port: u16,
    /// The policy module the demo tenant runs (see [`default_policy`]).
    pub module: Vec<u8>,
}

/// One of the demo tenant's people, for the welcome text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CastMember {
    /// The display name.
    pub name: String,
    /// The sign-in name.
    pub user_principal_name: String,
    /// The password (well known: the emulator is for demos and tests only).
    pub password: String,
    /// What signing in as them shows.
    pub situation: String,
}

/// A started demo: the emulator serving, the service started, the web chat
/// bound and ready to [`Demo::serve`].
pub struct Demo {
    /// The web chat's address, `http://127.0.0.1:PORT/`.
    pub url: String,
    /// The emulator (its state, for tests that look behind its HTTP surface).
    pub sim: Sim,
    /// The demo tenant's id.
    pub tenant: TenantId,
    /// The service.
    pub service: Arc<Service>,
    /// The web chat.
    pub chat: Arc<WebChat>,
    listener: TcpListener,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Demo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demo")
            .field("url", &self.url)
            .field("sim", &self.sim.base_url())
            .field("config", &self.config_path())
            .finish_non_exhaustive()
    }
}

/// Builds the default policy from `policies/default` (in the current
/// directory, else in the source tree this binary was built from), as
/// `latchkey policy build` does. Blocking: the first build takes a minute.
pub fn default_policy() -> Result<Vec<u8>, DemoError> {
    let candidates = [
        PathBuf::from("policies/default"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/default"),
    ];
    let crate_dir = candidates
        .iter()
        .find(|dir| dir.join("Cargo.toml").is_file())
        .ok_or(DemoError::NoPolicy)?;
    let built = build::build(
        crate_dir,
        &BuildOptions {
            target_dir: None,
            quiet: true,
        },
    )?;
    std::fs::read(&built.path).map_err(|source| DemoError::Write {
        path: built.path,
        source,
    })
}

impl Demo {
    /// Starts the emulator and the service, and binds the web chat.
    pub async fn start(options: DemoOptions) -> Result<Demo, DemoError> {
        let bind = |port: u16| async move {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            TcpListener::bind(addr)
                .await
                .map_err(|source| DemoError::Listen { addr, source })
        };
        let sim_listener = bind(options.sim_port).await?;
        let web_listener = bind(options.port).await?;
        let web_addr = web_listener
            .local_addr()
            .map_err(|source| DemoError::Listen {
                addr: SocketAddr::from(([127, 0, 0, 1], options.port)),
                source,
            })?;
        let tenant = sim::seed::demo(time::OffsetDateTime::now_utc())?;
        let running = sim::spawn(sim_listener, tenant).map_err(|source| DemoError::Listen {
            addr: SocketAddr::from(([127, 0, 0, 1], options.sim_port)),
            source,
        })?;
        let sim = running.sim;
        let dir = tempfile::Builder::new()
            .prefix("latchkey-demo-")
            .tempdir()
            .map_err(|source| DemoError::Write {
                path: std::env::temp_dir(),
                source,
            })?;
        let (tenant_id, config) = write_config(dir.path(), &sim, web_addr, &options.module, false)?;
        let (service, _) = Service::start(&config).await?;
        let chat = Arc::new(WebChat::for_service(&service, tenant_id.clone()));
        Ok(Demo {
            url: format!("http://{web_addr}/"),
            sim,
            tenant: tenant_id,
            service,
            chat,
            listener: web_listener,
            dir,
        })
    }

    /// The throwaway configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("latchkey.toml")
    }

    /// The people to sign in as, with their passwords and situations.
    pub fn cast(&self) -> Vec<CastMember> {
        let tenant = self.sim.tenant();
        CAST.iter()
            .filter_map(|(upn, situation)| {
                let user = tenant.user(upn)?;
                Some(CastMember {
                    name: user.display_name.clone(),
                    user_principal_name: user.user_principal_name.clone(),
                    password: user.password.clone(),
                    situation: (*situation).to_owned(),
                })
            })
            .collect()
    }

    /// What `latchkey demo` prints: where to go, and who to sign in as.
    pub fn welcome(&self) -> String {
        let cast = self.cast();
        let upn_width = cast
            .iter()
            .map(|c| c.user_principal_name.len())
            .max()
            .unwrap_or(0);
        let password_width = cast.iter().map(|c| c.password.len()).max().unwrap_or(0);
        let mut text = format!(
            "Latchkey demo: open {url}\n\
             (the web chat, a demo channel; Contoso's emulated Entra ID and Graph are at {sim})\n\n\
             Sign in as one of Contoso's people (demo passwords, never real ones):\n",
            url = self.url,
            sim = self.sim.base_url(),
        );
        for c in &cast {
            text.push_str(&format!(
                "  {upn:<upn_width$}  {password:<password_width$}  {situation}\n",
                upn = c.user_principal_name,
                password = c.password,
                situation = c.situation,
            ));
        }
        text.push_str(
            "\nThe sign-in page has a simulated phone: approve there (\"Approve on my phone \
             (simulated)\").\nRecovery codes arrive in the emulator's outbox: ",
        );
        text.push_str(&format!("{}/_sim/outbox\n", self.sim.base_url()));
        text.push_str(&format!(
            "Configuration (thrown away on exit): {}\n",
            self.config_path().display()
        ));
        text
    }

    /// Serves the web chat until `shutdown` completes, then closes the
    /// service and removes the throwaway configuration.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), DemoError> {
        let Demo {
            service,
            chat,
            listener,
            dir,
            ..
        } = self;
        let served = chat.serve(listener, shutdown).await;
        service.close().await;
        drop(dir);
        served.map_err(DemoError::Serve)
    }
}

/// Writes the key, the client secret, the module and `latchkey.toml` (for
/// the emulator's tenant, its web chat on `web`) into `dir`; returns the
/// tenant id and the configuration's path. `latchkey loadtest` writes its
/// service's configuration with it too, with `server_timing`.
pub(crate) fn write_config(
    dir: &Path,
    sim: &Sim,
    web: SocketAddr,
    module: &[u8],
    server_timing: bool,
) -> Result<(TenantId, PathBuf), DemoError> {
    let (tenant, client_id, secret) = {
        let tenant = sim.tenant();
        let app = tenant
            .apps
            .first()
            .ok_or_else(|| DemoError::Key("the demo tenant has no app registration".to_owned()))?;
        (
            tenant.id.clone(),
            app.client_id.clone(),
            app.client_secret.clone(),
        )
    };
    let tenant_id: TenantId = tenant
        .parse()
        .map_err(|e| DemoError::Key(format!("the demo tenant's id: {e}")))?;
    let write = |name: &str, bytes: &[u8], private: bool| -> Result<(), DemoError> {
        let path = dir.join(name);
        let failed = |source| DemoError::Write {
            path: path.clone(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        let mut file = options.open(&path).map_err(failed)?;
        std::io::Write::write_all(&mut file, bytes).map_err(failed)
    };
    std::fs::create_dir(dir.join("modules")).map_err(|source| DemoError::Write {
        path: dir.join("modules"),
        source,
    })?;
    write("modules/default.wasm", module, false)?;
    let key = keys::private_to_pem(&keys::generate()).map_err(|e| DemoError::Key(e.to_string()))?;
    write("host.pem", key.as_bytes(), true)?;
    write("contoso.secret", secret.as_bytes(), true)?;
    let config = format!(
        "# latchkey demo or loadtest: a throwaway configuration, removed when it stops.\n\
         [host]\nsigning_key = \"host.pem\"\ndatabase = \"latchkey.db\"\n\n\
         [policy]\nmodules_dir = \"modules\"\n\n\
         [web]\nlisten = \"{web}\"\ntenant = \"{tenant}\"\nserver_timing = {server_timing}\n\n\
         [tenants.{tenant}]\nname = \"Contoso (demo)\"\nmodule = \"default.wasm\"\nsha256 = \"{hash}\"\n\n\
         [tenants.{tenant}.graph]\nclient_id = \"{client_id}\"\nclient_secret_file = \"contoso.secret\"\n\
         authority = \"{authority}\"\ngraph_base_url = \"{graph}\"\n\n\
         [tenants.{tenant}.sign_in]\nredirect_uri = \"http://{web}/callback\"\nmail_from = \"{MAIL_FROM}\"\n",
        hash = ModuleHash::of(module),
        authority = sim.base_url(),
        graph = sim.graph_base(),
    );
    write("latchkey.toml", config.as_bytes(), false)?;
    Ok((tenant_id, dir.join("latchkey.toml")))
}
