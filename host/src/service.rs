//! The running service behind `latchkey serve`: the validated configuration,
//! the host's receipt keys, the audit log, each tenant's policy module and
//! Graph client, and the admin API in front of them.
//!
//! Start-up ([`Service::start`]) goes in this order, and stops at the first
//! error with a message that names the file or setting at fault:
//!
//! 1. the configuration is loaded and validated ([`Config::load`]);
//! 2. the host's signing key and the earlier keys it still trusts are read;
//! 3. the admin token is read (when `[admin]` is present), and so are the
//!    Slack channel's signing secret and bot token (when `[slack]` is) and
//!    the Teams bot's app secret (when `[teams]` is);
//! 4. every tenant's Graph client is built, its secret read;
//! 5. the policy registry is opened and every tenant's pinned module applied
//!    (a refused module is reported, and that tenant has no module, so it
//!    decides nothing, until a reload succeeds);
//! 6. the audit log is opened, intents left without outcome by a previous
//!    run are reconciled, and each tenant's module, or its refusal, is
//!    recorded in its chain.
//!
//! [`Service::check`] does steps 1 to 5 and touches no database, for
//! deployment pipelines (`latchkey serve --check`).
//!
//! Later stages (the chat front-ends, the investigator, the executor) hang
//! off this type: it hands out each tenant's [`GraphClient`], its settings,
//! the [`PolicyRegistry`], the [`HostKeys`] and the [`AuditLog`].

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::json;
use tokio::net::TcpListener;

use crate::admin::{self, AdminToken};
use crate::audit::{AuditError, AuditLog, EntryId, Kind};
use crate::config::{AdminConfig, Config, ConfigError, TenantConfig};
use crate::executor::Executor;
use crate::graph::{GraphClient, GraphError};
use crate::investigator::{Investigator, Settings as InvestigatorSettings};
use crate::policy::registry::OpenError;
use crate::policy::{
    Applied, Limits, LoadSource, ModuleHash, PolicyRegistry, Refusal, TenantPolicy,
};
use crate::receipt::{HostKeyError, HostKeys, NonceStore, SqliteNonceStore};
use crate::resolution::{ResolveError, Resolver, TenantRuntime};
use crate::tenant::TenantId;

/// Why the service could not start (or `--check` failed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The configuration, or a file it names, is not usable.
    #[error("{path}: {source}", path = .path.display())]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: ConfigError,
    },
    /// No tenant is configured: there would be nothing to serve.
    #[error("{}: no tenants are configured; add a [tenants.<tenant-id>] table", .0.display())]
    NoTenants(PathBuf),
    /// `[host] signing_key` is missing.
    #[error(
        "{}: [host] signing_key is required to sign receipts; create one with \
         `latchkey keygen --out host` and set signing_key = \"host.pem\"",
        .0.display()
    )]
    NoSigningKey(PathBuf),
    /// The host's keys could not be read.
    #[error("host keys: {0}")]
    HostKeys(#[from] HostKeyError),
    /// A tenant has no `[tenants.<id>.graph]` table.
    #[error(
        "tenant {0}: the service needs its Graph app registration; add a \
         [tenants.{0}.graph] table with client_id and client_secret_file or client_secret_env"
    )]
    NoGraph(TenantId),
    /// A tenant's Graph client could not be built.
    #[error("tenant {tenant}: Graph settings: {source}")]
    Graph {
        /// The tenant.
        tenant: TenantId,
        /// Why (boxed: Graph errors are large, and this one is rare).
        #[source]
        source: Box<GraphError>,
    },
    /// The policy registry could not be opened.
    #[error(transparent)]
    Registry(#[from] OpenError),
    /// The audit log could not be opened or written.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The admin API could not listen.
    #[error("cannot listen on {addr} for the admin API: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The admin API stopped with an error.
    #[error("the admin API stopped: {0}")]
    Serve(#[source] std::io::Error),
    /// A blocking task failed to finish.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why a tenant's reload did not apply a module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The tenant is neither running nor in the configuration file.
    #[error("tenant {0} is not configured")]
    UnknownTenant(TenantId),
    /// The configuration file no longer parses, or a file it names is unusable.
    #[error("the configuration cannot be used, nothing was changed: {0}")]
    Config(String),
    /// The tenant was removed from the configuration file.
    #[error(
        "tenant {0} is no longer in the configuration file; it keeps running as loaded \
         until the service restarts"
    )]
    RemovedFromConfig(TenantId),
    /// `[policy] modules_dir` changed; only a restart opens another directory.
    #[error(
        "[policy] modules_dir changed from {} to {}; restart the service to use another \
         directory, nothing was changed", was.display(), now.display()
    )]
    ModulesDirChanged {
        /// The directory in use.
        was: PathBuf,
        /// The directory the file now names.
        now: PathBuf,
    },
    /// The module was refused; the tenant keeps its previous module and
    /// settings.
    #[error("module refused, the tenant keeps its previous module: {refusal}")]
    Refused {
        /// Why.
        refusal: Refusal,
        /// The tenant as it is now.
        status: Box<TenantStatus>,
    },
    /// The audit log could not record the reload (the module change, if
    /// any, has happened).
    #[error("the reload could not be recorded in the audit log: {0}")]
    Audit(#[from] AuditError),
    /// A blocking task failed to finish.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What made a module active, or refused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The service's start.
    Startup,
    /// `POST /admin/v1/tenants/{id}/reload`.
    AdminReload,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::AdminReload => "admin_reload",
        }
    }
}

/// A tenant's active module and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActiveModule {
    /// The module's sha256.
    pub sha256: ModuleHash,
    /// The module file it was read from, relative to the modules directory.
    pub module_file: String,
    /// `compiled` (compiled at load) or `disk_cache` (precompiled code).
    pub loaded_from: &'static str,
    /// The publisher key that signed it, when a signature was required.
    pub signed_by: Option<String>,
    /// When it became active, in milliseconds since the Unix epoch.
    pub since_ms: i64,
    /// What applied it.
    pub trigger: Trigger,
}

/// A tenant's last refused module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefusalRecord {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// What tried to apply it.
    pub trigger: Trigger,
    /// The module file, relative to the modules directory.
    pub module_file: String,
    /// The sha256 the configuration pinned.
    pub pinned_sha256: ModuleHash,
    /// Why it was refused.
    pub reason: String,
}

/// A tenant as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantStatus {
    /// The tenant id.
    pub id: TenantId,
    /// Its name.
    pub name: String,
    /// The pinned module file, relative to the modules directory.
    pub module_file: String,
    /// The pinned sha256.
    pub pinned_sha256: ModuleHash,
    /// The ids of the trusted publisher keys; empty when no signature is
    /// required.
    pub publisher_keys: Vec<String>,
    /// The longest Temporary Access Pass the host signs for, in minutes.
    pub max_tap_lifetime_minutes: u32,
    /// The tenant's offset from UTC, in minutes.
    pub utc_offset_minutes: i32,
    /// The active module; `None` while the tenant has none (it then decides
    /// nothing).
    pub active: Option<ActiveModule>,
    /// The last refusal, until a module is applied again.
    pub last_refusal: Option<RefusalRecord>,
}

/// What start-up did, for the operator.
#[derive(Debug, Clone)]
pub struct Startup {
    /// The active receipt key's id.
    pub key_id: String,
    /// How many keys verify receipts (the active one included).
    pub verifying_keys: usize,
    /// The outcomes reconciliation appended for intents left without one.
    pub reconciled: Vec<EntryId>,
    /// Every tenant after its module was applied or refused.
    pub tenants: Vec<TenantStatus>,
    /// Where the admin API is to listen, when it is on.
    pub admin: Option<AdminConfig>,
}

/// What `--check` found.
#[derive(Debug, Clone)]
pub struct Check {
    /// Every tenant after its module was applied or refused.
    pub tenants: Vec<TenantStatus>,
    /// The active receipt key's id.
    pub key_id: String,
}

/// One tenant's running state.
struct TenantState {
    config: TenantConfig,
    publisher_keys: Vec<String>,
    graph: GraphClient,
    active: Option<ActiveModule>,
    last_refusal: Option<RefusalRecord>,
}

impl TenantState {
    fn status(&self, id: &TenantId) -> TenantStatus {
        TenantStatus {
            id: id.clone(),
            name: self.config.name.clone(),
            module_file: self.config.module.display().to_string(),
            pinned_sha256: self.config.sha256,
            publisher_keys: self.publisher_keys.clone(),
            max_tap_lifetime_minutes: self.config.max_tap_lifetime_minutes,
            utc_offset_minutes: self.config.utc_offset_minutes,
            active: self.active.clone(),
            last_refusal: self.last_refusal.clone(),
        }
    }
}

/// Everything start-up reads and checks before it touches the database.
struct Prepared {
    config: Config,
    keys: HostKeys,
    token: Option<AdminToken>,
    registry: PolicyRegistry,
    tenants: BTreeMap<TenantId, TenantState>,
}

/// The running service. Share it as `Arc<Service>`.
pub struct Service {
    config_path: PathBuf,
    modules_dir: PathBuf,
    admin: Option<AdminConfig>,
    token: Option<AdminToken>,
    keys: HostKeys,
    audit: Arc<AuditLog>,
    executor: Executor,
    registry: PolicyRegistry,
    tenants: RwLock<BTreeMap<TenantId, TenantState>>,
    /// One reload at a time: a reload reads the file, applies and records,
    /// and two interleaved could record in another order than they applied.
    reloads: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("config", &self.config_path)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Validates the configuration at `config_path` as [`Service::start`]
    /// would (keys, admin token, Slack and Teams secrets, Graph settings and secrets,
    /// every tenant's module) without opening the database or listening.
    pub fn check(config_path: &Path) -> Result<Check, ServiceError> {
        let prepared = prepare(config_path, Trigger::Startup)?;
        Ok(Check {
            key_id: prepared.keys.kid().to_string(),
            tenants: prepared
                .tenants
                .iter()
                .map(|(id, t)| t.status(id))
                .collect(),
        })
    }

    /// Starts the service from the configuration at `config_path` (see the
    /// module documentation for the order), without listening yet: call
    /// [`Service::run`] for that.
    pub async fn start(config_path: &Path) -> Result<(Arc<Service>, Startup), ServiceError> {
        let path = config_path.to_owned();
        // Compiling modules is CPU-bound: keep it off the async workers.
        let prepared = tokio::task::spawn_blocking(move || prepare(&path, Trigger::Startup))
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))??;
        let audit = AuditLog::open(&prepared.config.host.database)
            .await?
            .with_reconcile_grace(prepared.config.host.reconcile_grace);
        let reconciled = audit.reconcile(SystemTime::now()).await?;
        for (tenant, state) in &prepared.tenants {
            record(&audit, tenant, state, Trigger::Startup).await?;
        }
        let startup = Startup {
            key_id: prepared.keys.kid().to_string(),
            verifying_keys: prepared.keys.verifying().ids().count(),
            reconciled,
            tenants: prepared
                .tenants
                .iter()
                .map(|(id, t)| t.status(id))
                .collect(),
            admin: prepared.config.admin.clone(),
        };
        let audit = Arc::new(audit);
        // Receipts are verified with every key the host trusts (its own and
        // those kept for rotation); nonces live in the same database, so a
        // receipt spent before a restart stays spent.
        let nonces: Arc<dyn NonceStore> = Arc::new(SqliteNonceStore::new(&audit));
        let executor = Executor::new(
            prepared.keys.verifying().clone(),
            nonces,
            Arc::clone(&audit),
        );
        let service = Service {
            config_path: config_path.to_owned(),
            modules_dir: prepared.config.modules_dir.clone(),
            admin: prepared.config.admin,
            token: prepared.token,
            keys: prepared.keys,
            audit,
            executor,
            registry: prepared.registry,
            tenants: RwLock::new(prepared.tenants),
            reloads: tokio::sync::Mutex::new(()),
        };
        Ok((Arc::new(service), startup))
    }

    /// Binds the admin API's configured address, when the admin API is on.
    pub async fn bind_admin(&self) -> Result<Option<TcpListener>, ServiceError> {
        let Some(admin) = &self.admin else {
            return Ok(None);
        };
        TcpListener::bind(admin.listen)
            .await
            .map(Some)
            .map_err(|source| ServiceError::Listen {
                addr: admin.listen,
                source,
            })
    }

    /// Serves the admin API on `admin` (when given and the admin API is on)
    /// until `shutdown` completes, then lets requests in flight finish.
    pub async fn run(
        self: Arc<Self>,
        admin: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServiceError> {
        match (admin, self.token.clone()) {
            (Some(listener), Some(token)) => {
                let router = admin::app(Arc::clone(&self), token);
                axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown)
                    .await
                    .map_err(ServiceError::Serve)
            }
            _ => {
                shutdown.await;
                Ok(())
            }
        }
    }

    /// Closes the audit log, letting SQLite checkpoint its write-ahead log,
    /// once nothing else holds the service (after [`Service::run`]).
    pub async fn close(self: Arc<Self>) {
        let shared =
            || tracing::debug!("the service is still shared; its audit log closes when dropped");
        match Arc::try_unwrap(self) {
            Ok(service) => {
                let Service {
                    audit, executor, ..
                } = service;
                // The executor holds the log too; with it gone the log is ours.
                drop(executor);
                match Arc::try_unwrap(audit) {
                    Ok(audit) => audit.close().await,
                    Err(_) => shared(),
                }
            }
            Err(_) => shared(),
        }
    }

    /// The configuration file the service was started from.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The host's receipt keys.
    pub fn keys(&self) -> &HostKeys {
        &self.keys
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The executor: the only writer to Graph.
    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// The resolution steps over this service's registry, keys, log and
    /// executor.
    pub fn resolver(&self) -> Resolver<'_> {
        Resolver {
            registry: &self.registry,
            keys: &self.keys,
            audit: &self.audit,
            executor: &self.executor,
        }
    }

    /// What resolving a request in `tenant` needs from its settings now: its
    /// Graph client, an investigator on it with the tenant's UTC offset, the
    /// pinned module hash and the Temporary Access Pass maximum. Taken per
    /// request, so a reload applies to the next one.
    pub fn runtime(&self, tenant: &TenantId) -> Result<TenantRuntime, ResolveError> {
        let (graph, config) = self
            .read(|tenants| {
                tenants
                    .get(tenant)
                    .map(|t| (t.graph.clone(), t.config.clone()))
            })
            .ok_or_else(|| ResolveError::UnknownTenant(tenant.clone()))?;
        let settings_error = |reason: String| ResolveError::Settings {
            tenant: tenant.clone(),
            reason,
        };
        let settings = InvestigatorSettings {
            utc_offset_minutes: i16::try_from(config.utc_offset_minutes)
                .map_err(|e| settings_error(e.to_string()))?,
            ..InvestigatorSettings::default()
        };
        let investigator = Investigator::new(graph.clone(), settings)
            .map_err(|e| settings_error(e.to_string()))?;
        Ok(TenantRuntime {
            graph,
            investigator,
            pinned: config.sha256,
            max_tap_lifetime_minutes: config.max_tap_lifetime_minutes,
        })
    }

    /// The policy registry: each tenant's active module.
    pub fn registry(&self) -> &PolicyRegistry {
        &self.registry
    }

    /// The tenant's Graph client, if the tenant is configured.
    pub fn graph(&self, tenant: &TenantId) -> Option<GraphClient> {
        self.read(|tenants| tenants.get(tenant).map(|t| t.graph.clone()))
    }

    /// The tenant's settings, if it is configured.
    pub fn tenant_config(&self, tenant: &TenantId) -> Option<TenantConfig> {
        self.read(|tenants| tenants.get(tenant).map(|t| t.config.clone()))
    }

    /// Every tenant, in id order.
    pub fn tenants(&self) -> Vec<TenantStatus> {
        self.read(|tenants| tenants.iter().map(|(id, t)| t.status(id)).collect())
    }

    /// One tenant.
    pub fn tenant(&self, tenant: &TenantId) -> Option<TenantStatus> {
        self.read(|tenants| tenants.get(tenant).map(|t| t.status(tenant)))
    }

    fn read<T>(&self, f: impl FnOnce(&BTreeMap<TenantId, TenantState>) -> T) -> T {
        f(&self.tenants.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Re-reads the configuration file and re-applies `tenant`'s section: its
    /// pinned module (through [`PolicyRegistry::apply`]), publisher keys,
    /// Graph settings and limits. They are swapped together, and only when
    /// the module is applied; on refusal the tenant keeps its previous module
    /// and settings. Either way the result is recorded in the tenant's audit
    /// chain (a `note`, or a `refusal`).
    ///
    /// A tenant added to the file since start-up is started by its first
    /// reload. `[host]`, `[admin]` and `[policy]` are read at start-up only.
    pub async fn reload(self: &Arc<Self>, tenant: &TenantId) -> Result<TenantStatus, ReloadError> {
        let _one_at_a_time = self.reloads.lock().await;
        let this = Arc::clone(self);
        let id = tenant.clone();
        let result = tokio::task::spawn_blocking(move || this.reload_blocking(&id))
            .await
            .map_err(|e| ReloadError::Internal(e.to_string()))??;
        let (status, kind, body) = self
            .read(|tenants| {
                tenants.get(tenant).map(|state| {
                    let (kind, body) = record_body(state, Trigger::AdminReload, result.is_ok());
                    (state.status(tenant), kind, body)
                })
            })
            .ok_or_else(|| ReloadError::Internal("the tenant vanished".to_owned()))?;
        self.audit.append(tenant, kind, body).await?;
        match result {
            Ok(()) => Ok(status),
            Err(refusal) => Err(ReloadError::Refused {
                refusal,
                status: Box::new(status),
            }),
        }
    }

    /// The file and module work of [`Service::reload`]: the outer error
    /// means nothing changed, the inner one that the module was refused.
    fn reload_blocking(&self, tenant: &TenantId) -> Result<Result<(), Refusal>, ReloadError> {
        let config = Config::load(&self.config_path)
            .map_err(|e| ReloadError::Config(format!("{}: {e}", self.config_path.display())))?;
        let running = self.read(|tenants| tenants.contains_key(tenant));
        let Some(tenant_config) = config.tenants.get(tenant) else {
            return Err(if running {
                ReloadError::RemovedFromConfig(tenant.clone())
            } else {
                ReloadError::UnknownTenant(tenant.clone())
            });
        };
        if config.modules_dir != self.modules_dir {
            return Err(ReloadError::ModulesDirChanged {
                was: self.modules_dir.clone(),
                now: config.modules_dir,
            });
        }
        let graph = graph_client(&self.config_path, tenant, tenant_config)
            .map_err(|e| ReloadError::Config(e.to_string()))?;
        let mut fresh = TenantState {
            config: tenant_config.clone(),
            publisher_keys: Vec::new(),
            graph,
            active: None,
            last_refusal: None,
        };
        let result = fresh.apply(&self.registry, tenant, Trigger::AdminReload);
        let mut tenants = self.tenants.write().unwrap_or_else(|p| p.into_inner());
        match (&result, tenants.get_mut(tenant)) {
            (Err(_), Some(current)) => current.last_refusal = fresh.last_refusal,
            (Ok(()), _) | (Err(_), None) => {
                tenants.insert(tenant.clone(), fresh);
            }
        }
        Ok(result)
    }
}

impl TenantState {
    /// Applies the tenant's pinned module through the registry and records
    /// the result in `active` or `last_refusal`.
    fn apply(
        &mut self,
        registry: &PolicyRegistry,
        tenant: &TenantId,
        trigger: Trigger,
    ) -> Result<(), Refusal> {
        let result =
            TenantPolicy::from_config(tenant.clone(), &self.config, registry.modules_dir())
                .inspect_err(|refusal| {
                    tracing::warn!(%tenant, "policy module refused: {refusal}");
                })
                .and_then(|policy| {
                    self.publisher_keys = policy
                        .publishers
                        .ids()
                        .iter()
                        .map(|k| k.to_string())
                        .collect();
                    registry.apply(&policy)
                });
        match result {
            Ok(Applied { module, signed_by }) => {
                let loaded_from = match registry.active(tenant).map(|m| m.source()) {
                    Some(LoadSource::Disk) => "disk_cache",
                    Some(LoadSource::Compiled) | None => "compiled",
                };
                self.active = Some(ActiveModule {
                    sha256: module,
                    module_file: self.config.module.display().to_string(),
                    loaded_from,
                    signed_by: signed_by.map(|k| k.to_string()),
                    since_ms: now_ms(),
                    trigger,
                });
                self.last_refusal = None;
                Ok(())
            }
            Err(refusal) => {
                self.last_refusal = Some(RefusalRecord {
                    at_ms: now_ms(),
                    trigger,
                    module_file: self.config.module.display().to_string(),
                    pinned_sha256: self.config.sha256,
                    reason: refusal.to_string(),
                });
                Err(refusal)
            }
        }
    }
}

/// Steps 1 to 5 of start-up (see the module documentation).
fn prepare(path: &Path, trigger: Trigger) -> Result<Prepared, ServiceError> {
    let config_error = |source| ServiceError::Config {
        path: path.to_owned(),
        source,
    };
    let config = Config::load(path).map_err(config_error)?;
    if config.tenants.is_empty() {
        return Err(ServiceError::NoTenants(path.to_owned()));
    }
    let signing_key = config
        .host
        .signing_key
        .as_ref()
        .ok_or_else(|| ServiceError::NoSigningKey(path.to_owned()))?;
    let mut keys = HostKeys::load(signing_key)?;
    for trusted in &config.host.trusted_keys {
        keys.trust_pem_file(trusted, None)?;
    }
    let token = config
        .admin
        .as_ref()
        .map(AdminConfig::read_token)
        .transpose()
        .map_err(config_error)?;
    // Read here, not only when the channels start, so that `--check`
    // refuses a missing or unreadable Slack or Teams secret as start-up would.
    if let Some(slack) = &config.slack {
        slack.read_secrets().map_err(config_error)?;
    }
    if let Some(teams) = &config.teams {
        teams.read_secret().map_err(config_error)?;
    }
    let mut graphs = BTreeMap::new();
    for (tenant, tenant_config) in &config.tenants {
        graphs.insert(tenant.clone(), graph_client(path, tenant, tenant_config)?);
    }
    // Opens the directories and the sandbox; tenants are applied one by one
    // below, so that each one's publisher keys and result are kept.
    let directories = Config {
        tenants: BTreeMap::new(),
        ..config.clone()
    };
    let (registry, _) = PolicyRegistry::open(&directories, Limits::default())?;
    let mut tenants = BTreeMap::new();
    for (tenant, graph) in graphs {
        let Some(tenant_config) = config.tenants.get(&tenant) else {
            continue;
        };
        let mut state = TenantState {
            config: tenant_config.clone(),
            publisher_keys: Vec::new(),
            graph,
            active: None,
            last_refusal: None,
        };
        // A refusal is in the state; the service starts without that module.
        let _ = state.apply(&registry, &tenant, trigger);
        tenants.insert(tenant, state);
    }
    Ok(Prepared {
        config,
        keys,
        token,
        registry,
        tenants,
    })
}

/// The tenant's Graph client, its secret read.
fn graph_client(
    path: &Path,
    tenant: &TenantId,
    config: &TenantConfig,
) -> Result<GraphClient, ServiceError> {
    let settings = config
        .graph
        .as_ref()
        .ok_or_else(|| ServiceError::NoGraph(tenant.clone()))?;
    let graph_config = settings
        .graph_config(tenant)
        .map_err(|source| ServiceError::Config {
            path: path.to_owned(),
            source,
        })?;
    GraphClient::new(graph_config).map_err(|source| ServiceError::Graph {
        tenant: tenant.clone(),
        source: Box::new(source),
    })
}

/// Records a tenant's module, or its refusal, in its chain.
async fn record(
    audit: &AuditLog,
    tenant: &TenantId,
    state: &TenantState,
    trigger: Trigger,
) -> Result<EntryId, AuditError> {
    let (kind, body) = record_body(state, trigger, state.last_refusal.is_none());
    audit.append(tenant, kind, body).await
}

/// The audit entry for an applied module (a note) or a refused one.
fn record_body(state: &TenantState, trigger: Trigger, applied: bool) -> (Kind, serde_json::Value) {
    match (&state.active, &state.last_refusal, applied) {
        (Some(active), _, true) => (
            Kind::Note,
            json!({
                "event": "policy_applied",
                "trigger": trigger.as_str(),
                "module_sha256": active.sha256,
                "module_file": active.module_file,
                "loaded_from": active.loaded_from,
                "signed_by": active.signed_by,
            }),
        ),
        (active, refusal, _) => (
            Kind::Refusal,
            json!({
                "event": "policy_refused",
                "trigger": trigger.as_str(),
                "module_file": refusal.as_ref().map(|r| r.module_file.as_str()),
                "pinned_sha256": refusal.as_ref().map(|r| r.pinned_sha256),
                "reason": refusal.as_ref().map(|r| r.reason.as_str()),
                "kept_sha256": active.as_ref().map(|a| a.sha256),
            }),
        ),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}
