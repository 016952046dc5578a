//! The conversation engine: one state machine per (tenant, user) that turns
//! "I can't log in" into a verified, policy-decided resolution, an
//! explanation, or an approval on its way (DESIGN.md, "The flow of one
//! request").
//!
//! # The sequence
//!
//! 1. A message arrives from a channel that verified the [`Speaker`] (web
//!    chat sign-in, Teams JWT, Slack signature). It is screened (control and
//!    invisible characters removed, look-alike letters and hostile phrasing
//!    noticed, see `conversation/screening.rs`) and its [`Intent`] read.
//! 2. A request for help opens a case: "looking into your account" if the
//!    investigation takes more than [`EngineSettings::progress_after`], then
//!    [`Resolver::decide`](crate::resolution::Resolver::decide), then what was
//!    found, in plain words from the facts (`conversation/findings.rs`).
//! 3. The decision is followed:
//!    * `require-verification`: every method the policy accepts that the
//!      requester can do is offered at once (the MFA step-up link, a code to
//!      the recovery email, a confirmation by the manager, who gets an
//!      [`EventKind::ApprovalRequest`] in their own conversation). Each one
//!      passed is recorded and the policy is asked again with it as a fact.
//!    * `require-approval`: an approval request goes to the approver
//!      ([`crate::approvals`]); on approval the policy is asked again with
//!      the approval as a fact; on refusal the requester is told.
//!    * `allow`: [`Resolver::act`](crate::resolution::Resolver::act) makes
//!      the writes; a new password or Temporary Access Pass becomes an
//!      [`EventKind::Secret`], fetched once through [`Engine::take_secret`].
//!    * `deny`, `escalate`: the policy's reason, and the case ends.
//! 4. "Never mind" cancels at any time. A case ends by itself when nothing
//!    happens before its deadline: [`EngineSettings::idle_timeout`] after the
//!    requester's last message, or the deadline of what it waits for (a
//!    manager's confirmation, an approval), whichever is later.
//!
//! # Guardrails
//!
//! Nothing said in chat changes who the requester is (the [`Speaker`] comes
//! from the channel), which account is acted on (the executor acts on the
//! speaker's own, and a request naming another account goes to the policy
//! with `about`, which the default policy refuses), or whether a
//! verification is needed (the policy decides, and only the verifier's
//! results are recorded as passed). A model-backed [`IntentReader`] can
//! replace [`KeywordIntents`] without touching any of this.
//!
//! Every flagged message (see [`Flag`]) becomes a `note` in the tenant's
//! audit chain with its flags, the intent read and a sha256 of the text,
//! never the text itself. Verifications offered, passed and failed are
//! `verification` entries; approvals are `approval` entries; an answer from
//! someone who may not give it is a `refusal`.
//!
//! # Storage
//!
//! Conversations (their state and events) live in the service's SQLite
//! database, so a conversation resumes after a restart. Secrets never do:
//! they are held in memory until fetched once or until
//! [`EngineSettings::secret_ttl`], and a restart loses them (the user asks
//! again). Codes typed in chat are stored masked. Pending step-up links and
//! email codes do not survive a restart either (see
//! [`crate::verification`]); the user says "yes" for new ones.
//!
//! Within one process, turns of the same conversation run one at a time.
//! Event numbers are allocated in the database, so events from several
//! tasks never collide; several replicas need the conversation lock in the
//! database too (a row lock in PostgreSQL), which this version does not do.

mod findings;
mod intents;
mod screening;
mod state;
mod store;
mod vault;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use latchkey_policy::{AnyOf, Approval, Approver, Channel, Decision, Facts, Method};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use tokio::sync::Mutex as AsyncMutex;

use crate::approvals::{self, ApprovalError, Approvals, Ask, DEFAULT_APPROVAL_TTL};
use crate::audit::{AuditError, Kind};
use crate::executor::{Applied, Execution, WriteStatus};
use crate::graph::{GraphClient, Secret};
use crate::ids::{RandomError, UserId};
use crate::investigator::{Claim, Inquiry};
use crate::resolution::{Decided, ResolveError, TenantRuntime, claim_name};
use crate::service::Service;
use crate::tenant::TenantId;
use crate::verification::{Completed, VerificationError, Verifier};

pub use intents::{Intent, IntentReader, KeywordIntents, MAX_ACCOUNT_CHARS};
pub use screening::Flag;
pub use store::Appended;

use state::{Case, CodeOffer, ManagerOffer, Offers, State, StepUpOffer, Waiting};
use store::{Conversation, Flow, Store};
use vault::Vault;

/// Default [`EngineSettings::idle_timeout`]: 15 minutes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Default [`EngineSettings::progress_after`]: one second.
pub const DEFAULT_PROGRESS_AFTER: Duration = Duration::from_secs(1);
/// Default [`EngineSettings::max_message_chars`]: 2000 characters, a long
/// paragraph; "I can't log in" needs far fewer.
pub const DEFAULT_MAX_MESSAGE_CHARS: usize = 2000;
/// Default [`EngineSettings::secret_ttl`]: one hour, the longest a default
/// Temporary Access Pass lives.
pub const DEFAULT_SECRET_TTL: Duration = Duration::from_secs(3600);
/// How often a user's pending group approvals are looked for while they
/// only poll: once a minute.
const GROUP_CHECK_INTERVAL: i64 = 60;

/// Who is speaking, as the channel verified it (web chat sign-in, Teams JWT,
/// Slack signature). Never from chat text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Speaker {
    /// The speaker's tenant.
    pub tenant: TenantId,
    /// The speaker's Entra object id.
    pub user: UserId,
    /// Where they speak from.
    pub channel: Channel,
    /// Their display name, for greetings.
    pub display_name: String,
}

/// One thing that happened in a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Its number in the conversation: 1, 2, 3...
    pub seq: u64,
    /// When, in Unix seconds.
    pub at: i64,
    /// What.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum EventKind {
    /// The user's message, cleaned (a typed code is masked).
    UserMessage {
        /// The text.
        text: String,
    },
    /// The bot's message.
    BotMessage {
        /// The text.
        text: String,
    },
    /// Something is taking a while.
    Progress {
        /// What.
        text: String,
    },
    /// "Approve the sign-in": the MFA step-up link.
    StepUp {
        /// The authorize URL to open.
        url: String,
    },
    /// A code was sent to the recovery email.
    CodeSent {
        /// The masked address.
        to: String,
    },
    /// A secret (password, Temporary Access Pass) to fetch once through
    /// [`Engine::take_secret`].
    Secret {
        /// Its id.
        secret_id: String,
        /// What it is.
        label: String,
    },
    /// In the approver's conversation: a request to approve, or to confirm
    /// a report's identity.
    ApprovalRequest {
        /// The id to answer with [`Engine::answer`].
        request_id: String,
        /// Who asks (name and UPN).
        requester: String,
        /// Why the approval is needed.
        reason: String,
        /// `approval` or `manager-confirmation`.
        kind: String,
        /// When it stops being accepted, Unix seconds.
        expires_at: i64,
    },
    /// In the approver's conversation: their answer was recorded.
    RequestAnswered {
        /// The request.
        request_id: String,
        /// Approved (or confirmed).
        approved: bool,
    },
    /// The case ended with its resolution.
    Resolved {
        /// What was done, or why nothing was.
        summary: String,
    },
    /// The case was cancelled, or timed out.
    Cancelled,
    /// The case was handed to the help desk.
    Escalated {
        /// Why.
        reason: String,
    },
}

/// What an OIDC redirect completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Callback {
    /// A channel sign-in: this is who is at the browser.
    SignedIn(Speaker),
    /// A step-up of this speaker's conversation passed; the conversation
    /// went on.
    SteppedUp(Speaker),
}

/// How the engine behaves. [`EngineSettings::default`] gives the defaults,
/// each documented on its constant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineSettings {
    /// How long an open case waits for the requester's next message. Default
    /// [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// How long an approval request waits for its answer. Default
    /// [`DEFAULT_APPROVAL_TTL`].
    pub approval_ttl: Duration,
    /// How long a step may take before a progress message says so. Default
    /// [`DEFAULT_PROGRESS_AFTER`].
    pub progress_after: Duration,
    /// The longest message read; longer ones are refused. Default
    /// [`DEFAULT_MAX_MESSAGE_CHARS`].
    pub max_message_chars: usize,
    /// How long a secret waits to be fetched. Default
    /// [`DEFAULT_SECRET_TTL`].
    pub secret_ttl: Duration,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            approval_ttl: DEFAULT_APPROVAL_TTL,
            progress_after: DEFAULT_PROGRESS_AFTER,
            max_message_chars: DEFAULT_MAX_MESSAGE_CHARS,
            secret_ttl: DEFAULT_SECRET_TTL,
        }
    }
}

/// Why the engine could not do what was asked. A problem with the user's
/// request (a denial, a failed Graph read, a wrong code) is not an error:
/// it is answered in the conversation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The tenant is not served here.
    #[error("tenant {0} is not configured")]
    UnknownTenant(TenantId),
    /// The tenant has no sign-in settings, or none usable.
    #[error("tenant {tenant}: sign-in is not available: {reason}")]
    SignInUnavailable {
        /// The tenant.
        tenant: TenantId,
        /// What is missing, and what to configure.
        reason: String,
    },
    /// An OIDC redirect whose `state` this engine did not start (or already
    /// completed).
    #[error("this sign-in is not known here or was already completed; start again")]
    UnknownState,
    /// A sign-in or step-up did not verify anyone.
    #[error("the sign-in did not verify you: {0}")]
    Verification(#[from] VerificationError),
    /// No approval or confirmation request has this id (for this speaker's
    /// tenant).
    #[error("there is no request {0:?} to answer")]
    UnknownRequest(String),
    /// The speaker may not answer this request: nothing was recorded but the
    /// refusal.
    #[error("you may not answer this request: {0}")]
    NotApprover(String),
    /// The request was already answered, expired or was withdrawn.
    #[error("this request is no longer open: {0}")]
    RequestClosed(String),
    /// The audit log failed: nothing goes on without a record.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The conversation database failed.
    #[error("conversation database error: {0}")]
    Database(#[from] crate::audit::DbError),
    /// A stored conversation is not what this version writes.
    #[error("stored conversation data is unreadable: {0}")]
    Corrupt(String),
    /// No randomness for an id.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// An approval could not be asked for or checked (a Graph read failed).
    #[error(transparent)]
    Approval(ApprovalError),
}

type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;
/// A conversation's key.
type Key = (TenantId, UserId);

/// The conversation engine. Share it behind an `Arc`; every method takes
/// `&self`.
pub struct Engine {
    service: Arc<Service>,
    verifier: Arc<Verifier>,
    intents: Box<dyn IntentReader>,
    settings: EngineSettings,
    store: Store,
    approvals: Approvals,
    vault: Vault,
    clock: Clock,
    /// A random id of this engine, kept with the step-up links and codes it
    /// offers: those of an earlier process are known to be dead.
    instance: String,
    /// One turn at a time per conversation.
    locks: StdMutex<HashMap<Key, Arc<AsyncMutex<()>>>>,
    /// When each user was last checked for pending group approvals.
    group_checks: StdMutex<HashMap<Key, i64>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("service", &self.service)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// One conversation, loaded for a turn, and the events the turn added.
struct Turn {
    tenant: TenantId,
    user: UserId,
    channel: Channel,
    display_name: String,
    case: Option<Case>,
    events: Vec<Event>,
}

impl Turn {
    fn speaker(&self) -> Speaker {
        Speaker {
            tenant: self.tenant.clone(),
            user: self.user.clone(),
            channel: self.channel,
            display_name: self.display_name.clone(),
        }
    }
}

const GREETING: &str = "Hello! I help when you cannot sign in to your Microsoft 365 account. \
     Tell me what is wrong, for example \"I forgot my password\", \"I lost my phone\" or \
     \"my account is locked\".";
const UNCLEAR: &str = "I did not understand that. Tell me what is wrong with signing in, for \
     example \"I forgot my password\", \"I lost my phone\", \"my account is locked\" or \
     \"my password expired\".";
const NO_SKIPPING: &str = "I cannot skip or change a verification, and nothing said in chat \
     changes who you are or what you may do: your organisation's policy decides, and I check \
     it in code.";

impl Engine {
    /// An engine over `service` (its audit log's database holds the
    /// conversations), verifying with `verifier`, reading intents with
    /// `intents`.
    pub fn new(
        service: Arc<Service>,
        verifier: Arc<Verifier>,
        intents: Box<dyn IntentReader>,
        settings: EngineSettings,
    ) -> Engine {
        let store = Store::new(service.audit().db().clone());
        let approvals = Approvals::new(service.audit());
        Engine {
            service,
            verifier,
            intents,
            settings,
            store,
            approvals,
            vault: Vault::default(),
            clock: Arc::new(system_now),
            instance: hex::encode(crate::ids::random_bytes::<8>().unwrap_or_default()),
            locks: StdMutex::new(HashMap::new()),
            group_checks: StdMutex::new(HashMap::new()),
        }
    }

    /// The engine `latchkey serve` runs: over `service`, verifying with a
    /// [`Verifier`] on its audit log, reading intents with
    /// [`KeywordIntents`], default settings. Every channel shares it.
    pub fn standard(service: &Arc<Service>) -> Engine {
        Engine::new(
            Arc::clone(service),
            Arc::new(Verifier::new(service.audit())),
            Box::new(KeywordIntents),
            EngineSettings::default(),
        )
    }

    /// The same engine reading the time from `clock` (Unix seconds), for
    /// tests of timeouts and expiry. The decisions' clock too: the policy
    /// sees this time.
    pub fn with_clock(mut self, clock: impl Fn() -> i64 + Send + Sync + 'static) -> Engine {
        self.clock = Arc::new(clock);
        self
    }

    /// The settings in use.
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Announcements of every event appended to any conversation from now
    /// on: how a channel learns of events it did not cause (an approval
    /// request for a manager, a step-up completed in a browser, an answer
    /// from someone else). A receiver that falls behind gets
    /// `RecvError::Lagged` and should read every conversation it serves.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Appended> {
        self.store.subscribe()
    }

    /// A user's message. Returns the events it produced in the speaker's
    /// conversation (also readable later through [`Engine::events`]).
    pub async fn post(&self, speaker: &Speaker, text: &str) -> Result<Vec<Event>, EngineError> {
        self.known(&speaker.tenant)?;
        let lock = self.lock(&speaker.tenant, &speaker.user);
        let _turn = lock.lock().await;
        let mut turn = self.open(speaker).await?;
        let screened = screening::screen(text, self.settings.max_message_chars);
        let intent = if screened.too_long() {
            Intent::Unclear
        } else {
            self.intents.read(&screened.text)
        };
        let shown = match &intent {
            Intent::Code(code) => "•".repeat(code.chars().count()),
            _ => screened.text.clone(),
        };
        self.say(&mut turn, EventKind::UserMessage { text: shown })
            .await?;
        self.expire_if_due(&mut turn).await?;
        // The requester spoke: the idle timeout starts again.
        let idle_until = self.now().saturating_add(self.idle_seconds());
        if let Some(case) = turn.case.as_mut() {
            case.deadline = case.deadline.max(idle_until);
        }
        self.deliver_group_requests(&mut turn).await?;
        let mut flags = screened.flags.clone();
        if matches!(intent, Intent::About { .. }) {
            flags.push(Flag::NamesAccount);
        }
        if !flags.is_empty() {
            self.note_screened(&turn, text, &screened, &intent, &flags)
                .await?;
        }
        if screened.too_long() {
            let text = format!(
                "That message is too long for me ({} characters; I read at most {}). Tell me \
                 in a sentence or two what is wrong.",
                screened.chars, self.settings.max_message_chars
            );
            self.bot(&mut turn, text).await?;
        } else {
            self.handle(&mut turn, intent, &flags).await?;
        }
        self.save(&turn).await?;
        Ok(turn.events)
    }

    /// The speaker's conversation events with `seq` above `after` (the web
    /// chat polls this), at most a thousand at a time. Also ends a case past
    /// its deadline and shows pending group approvals, when no turn of this
    /// conversation is running.
    pub async fn events(&self, speaker: &Speaker, after: u64) -> Result<Vec<Event>, EngineError> {
        self.known(&speaker.tenant)?;
        let lock = self.lock(&speaker.tenant, &speaker.user);
        if let Ok(_turn) = lock.try_lock()
            && let Some(conversation) = self.store.load(&speaker.tenant, &speaker.user).await?
        {
            let mut turn = self.turn_of(&speaker.tenant, &speaker.user, conversation);
            let due = turn.case.as_ref().is_some_and(|c| c.deadline < self.now());
            if due {
                self.expire_if_due(&mut turn).await?;
                self.save(&turn).await?;
            }
            let checked = self.checked_lately(&turn.tenant, &turn.user);
            if !checked {
                self.deliver_group_requests(&mut turn).await?;
            }
        }
        self.store
            .events(&speaker.tenant, &speaker.user, after)
            .await
    }

    /// Starts a plain sign-in to `tenant` for a channel that signs users in
    /// itself (the web chat): the authorize URL to send the browser to.
    pub async fn begin_sign_in(
        &self,
        tenant: &TenantId,
        channel: Channel,
    ) -> Result<String, EngineError> {
        self.known(tenant)?;
        let (oidc, redirect_uri) = self.oidc(tenant)?;
        let start = self.verifier.begin_sign_in(&oidc, &redirect_uri).await?;
        self.store
            .put_flow(
                &start.state,
                &Flow::SignIn {
                    tenant: tenant.clone(),
                    channel,
                },
                start.expires_at,
            )
            .await?;
        Ok(start.authorize_url)
    }

    /// The OIDC redirect came back (the web layer's `/callback`): completes
    /// the sign-in or the step-up ([`Verifier::complete`]), and for a
    /// step-up continues the conversation it belongs to. A step-up that
    /// fails is told in that conversation, recorded, and returned as
    /// [`EngineError::Verification`].
    pub async fn oidc_callback(&self, state: &str, code: &str) -> Result<Callback, EngineError> {
        let flow = self
            .store
            .take_flow(state)
            .await?
            .ok_or(EngineError::UnknownState)?;
        let tenant = match &flow {
            Flow::SignIn { tenant, .. } | Flow::StepUp { tenant, .. } => tenant.clone(),
        };
        let (oidc, _) = self.oidc(&tenant)?;
        let completed = self.verifier.complete(&oidc, state, code).await;
        match (flow, completed) {
            (
                Flow::SignIn { channel, .. },
                Ok(Completed::SignIn {
                    tenant: signed_in,
                    user,
                    display_name,
                }),
            ) if signed_in == tenant => {
                let speaker = Speaker {
                    tenant: signed_in,
                    user,
                    channel,
                    display_name,
                };
                let lock = self.lock(&speaker.tenant, &speaker.user);
                let _turn = lock.lock().await;
                let mut turn = self.open(&speaker).await?;
                self.deliver_group_requests(&mut turn).await?;
                self.save(&turn).await?;
                Ok(Callback::SignedIn(speaker))
            }
            (Flow::StepUp { user, .. }, Ok(Completed::StepUp(passed)))
                if passed.requester == user && passed.tenant == tenant =>
            {
                let lock = self.lock(&tenant, &user);
                let _turn = lock.lock().await;
                let conversation = self.store.load(&tenant, &user).await?.ok_or_else(|| {
                    EngineError::Corrupt("a step-up for a conversation that does not exist".into())
                })?;
                let mut turn = self.turn_of(&tenant, &user, conversation);
                self.record_verification(&turn, Method::MfaStepUp, "passed", None)
                    .await?;
                self.expire_if_due(&mut turn).await?;
                match turn.case.as_mut() {
                    Some(case) => {
                        if let Waiting::Verification(offers) = &mut case.waiting {
                            offers.step_up = None;
                        }
                        case.verifications.push(passed.verification());
                        self.bot(
                            &mut turn,
                            "Thank you: you are verified with MFA.".to_owned(),
                        )
                        .await?;
                        self.advance(&mut turn).await?;
                    }
                    None => {
                        self.bot(
                            &mut turn,
                            "You are verified, but no request is open any more. Tell me what \
                             is wrong and we will start again."
                                .to_owned(),
                        )
                        .await?;
                    }
                }
                self.save(&turn).await?;
                Ok(Callback::SteppedUp(turn.speaker()))
            }
            (Flow::StepUp { user, .. }, outcome) => {
                let error = match outcome {
                    Err(e) => e,
                    Ok(_) => VerificationError::InvalidInput(
                        "the sign-in completed for someone other than the requester".to_owned(),
                    ),
                };
                let lock = self.lock(&tenant, &user);
                let _turn = lock.lock().await;
                if let Some(conversation) = self.store.load(&tenant, &user).await? {
                    let mut turn = self.turn_of(&tenant, &user, conversation);
                    self.record_verification(
                        &turn,
                        Method::MfaStepUp,
                        "failed",
                        Some(&error.to_string()),
                    )
                    .await?;
                    if let Some(Waiting::Verification(offers)) =
                        turn.case.as_mut().map(|c| &mut c.waiting)
                    {
                        offers.step_up = None;
                    }
                    self.bot(
                        &mut turn,
                        format!(
                            "The sign-in did not verify you: {error}. Say \"yes\" for a new link."
                        ),
                    )
                    .await?;
                    self.save(&turn).await?;
                }
                Err(EngineError::Verification(error))
            }
            (Flow::SignIn { .. }, Err(e)) => Err(EngineError::Verification(e)),
            (Flow::SignIn { .. }, Ok(_)) => {
                Err(EngineError::Verification(VerificationError::InvalidInput(
                    "the sign-in did not complete as a sign-in of this tenant".to_owned(),
                )))
            }
        }
    }

    /// A button press on an approval or manager-confirmation card, by
    /// `speaker` (verified by the channel). Returns the events it produced in
    /// the speaker's conversation; the requester's conversation goes on.
    pub async fn answer(
        &self,
        speaker: &Speaker,
        request_id: &str,
        approve: bool,
    ) -> Result<Vec<Event>, EngineError> {
        self.known(&speaker.tenant)?;
        let now = self.now();
        let request_id: String = request_id.chars().take(80).collect();
        let graph = self.graph(&speaker.tenant)?;
        let approval = self
            .approvals
            .get(&request_id)
            .await
            .map_err(approval_error)?;
        if approval.is_some() {
            let answer = approvals::Answer {
                tenant: &speaker.tenant,
                id: &request_id,
                answered_by: &speaker.user,
                approve,
                now,
            };
            let answered = self
                .approvals
                .answer(self.service.audit(), &graph, &answer)
                .await
                .map_err(approval_error)?;
            let mine = self
                .answered(speaker, &request_id, approve, &answered.requester_name)
                .await?;
            self.continue_after_approval(&answered, approve).await?;
            return Ok(mine);
        }
        let confirmation = match self
            .verifier
            .answer_manager(&request_id, &speaker.user, approve)
            .await
        {
            Ok(answer) if answer.tenant == speaker.tenant => answer,
            Ok(_) | Err(VerificationError::UnknownRequest(_)) => {
                return Err(EngineError::UnknownRequest(request_id));
            }
            Err(VerificationError::NotTheManager) => {
                self.service
                    .audit()
                    .append(
                        &speaker.tenant,
                        Kind::Refusal,
                        json!({
                            "stage": "manager-confirmation",
                            "request_id": request_id,
                            "who": speaker.user,
                            "why": "only the requester's manager may answer",
                        }),
                    )
                    .await?;
                return Err(EngineError::NotApprover(
                    "only the requester's manager can answer this confirmation".to_owned(),
                ));
            }
            Err(e @ (VerificationError::AlreadyAnswered | VerificationError::Expired)) => {
                return Err(EngineError::RequestClosed(e.to_string()));
            }
            Err(e) => return Err(EngineError::Verification(e)),
        };
        let requester = confirmation.requester.clone();
        let requester_name = self
            .store
            .load(&speaker.tenant, &requester)
            .await?
            .map_or_else(|| requester.to_string(), |c| c.display_name);
        let mine = self
            .answered(speaker, &request_id, approve, &requester_name)
            .await?;
        let lock = self.lock(&speaker.tenant, &requester);
        let _turn = lock.lock().await;
        let Some(conversation) = self.store.load(&speaker.tenant, &requester).await? else {
            return Ok(mine);
        };
        let mut turn = self.turn_of(&speaker.tenant, &requester, conversation);
        let method = Method::ManagerConfirmation;
        let outcome = if approve { "passed" } else { "refused" };
        self.record_verification(&turn, method, outcome, None)
            .await?;
        self.expire_if_due(&mut turn).await?;
        let waiting_for_it = turn.case.as_ref().is_some_and(|c| {
            matches!(&c.waiting, Waiting::Verification(o)
                if o.manager.as_ref().is_some_and(|m| m.request_id == request_id))
        });
        if waiting_for_it && let Some(case) = turn.case.as_mut() {
            let name = match &mut case.waiting {
                Waiting::Verification(offers) => offers
                    .manager
                    .take()
                    .map_or_else(|| "Your manager".to_owned(), |m| m.name),
                _ => "Your manager".to_owned(),
            };
            match confirmation.verification() {
                Some(verification) => {
                    case.verifications.push(verification);
                    self.bot(&mut turn, format!("{name} confirmed it is you."))
                        .await?;
                    self.advance(&mut turn).await?;
                }
                None => self.manager_refused(&mut turn, &name).await?,
            }
        }
        self.save(&turn).await?;
        Ok(mine)
    }

    /// A secret (new password, Temporary Access Pass) shown once: returns it
    /// the first time for its owner, then `None`. Kept in memory only,
    /// never stored.
    pub fn take_secret(&self, speaker: &Speaker, secret_id: &str) -> Option<Secret> {
        self.vault
            .take(secret_id, &speaker.tenant, &speaker.user, self.now())
    }

    /// Expires conversations, approvals and confirmations past their
    /// deadline (call periodically; the engine also checks lazily).
    pub async fn sweep(&self) -> Result<(), EngineError> {
        let now = self.now();
        self.vault.expire(now);
        let expired = self
            .approvals
            .expire_due(self.service.audit(), now)
            .await
            .map_err(approval_error)?;
        for request in expired {
            if let Some(manager) = &request.manager {
                self.store
                    .append(
                        &request.tenant,
                        manager,
                        now,
                        EventKind::BotMessage {
                            text: format!(
                                "{}'s request expired before it was answered.",
                                request.requester_name
                            ),
                        },
                    )
                    .await?;
            }
        }
        for (tenant, user) in self.store.due(now).await? {
            let lock = self.lock(&tenant, &user);
            let _turn = lock.lock().await;
            if let Some(conversation) = self.store.load(&tenant, &user).await? {
                let mut turn = self.turn_of(&tenant, &user, conversation);
                self.expire_if_due(&mut turn).await?;
                self.save(&turn).await?;
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------------
    // Turns

    /// Reads `intent` in the light of the open case.
    async fn handle(
        &self,
        turn: &mut Turn,
        intent: Intent,
        flags: &[Flag],
    ) -> Result<(), EngineError> {
        let pushy = flags.iter().any(|f| {
            matches!(
                f,
                Flag::SkipVerification | Flag::ClaimsAuthority | Flag::InstructionOverride
            )
        });
        let waiting = turn.case.as_ref().map(|c| c.waiting.clone());
        match (intent, waiting) {
            (Intent::Cancel, Some(_)) => self.cancel(turn).await,
            (Intent::Cancel, None) => {
                self.bot(turn, "There is nothing to cancel.".to_owned())
                    .await
            }
            (Intent::Help(claim), _) => self.start(turn, claim, None).await,
            (Intent::About { account, claim }, _) => self.start(turn, claim, Some(account)).await,
            (Intent::Code(code), Some(Waiting::Verification(offers))) if offers.code.is_some() => {
                self.check_code(turn, &code).await
            }
            (Intent::Code(_), Some(Waiting::Verification(offers)))
                if offers.methods.contains(&Method::RecoveryEmailCode) =>
            {
                self.bot(
                    turn,
                    "I have no live code for you: it expired, was used up, or the service \
                     restarted. Say \"yes\" and I will send a new one."
                        .to_owned(),
                )
                .await
            }
            (Intent::Code(_), _) => {
                self.bot(
                    turn,
                    "I am not waiting for a code from you right now.".to_owned(),
                )
                .await
            }
            (Intent::Yes, Some(Waiting::Verification(_))) => self.advance(turn).await,
            (_, Some(waiting)) => {
                if pushy {
                    self.bot(turn, NO_SKIPPING.to_owned()).await?;
                }
                self.remind(turn, &waiting).await
            }
            (Intent::Greeting, None) => self.bot(turn, GREETING.to_owned()).await,
            (_, None) if pushy => self.bot(turn, NO_SKIPPING.to_owned()).await,
            (_, None) => self.bot(turn, UNCLEAR.to_owned()).await,
        }
    }

    /// Opens a case (replacing any open one: its verifications and live
    /// offers carry over, they are about the speaker; a pending approval is
    /// withdrawn) and decides it.
    async fn start(
        &self,
        turn: &mut Turn,
        claim: Claim,
        about: Option<String>,
    ) -> Result<(), EngineError> {
        let now = self.now();
        let (verifications, waiting) = match turn.case.take() {
            Some(old) => {
                self.withdraw(&turn.tenant, &old).await?;
                let waiting = match old.waiting {
                    waiting @ Waiting::Verification(_) => waiting,
                    _ => Waiting::Nothing,
                };
                (old.verifications, waiting)
            }
            None => (Vec::new(), Waiting::Nothing),
        };
        turn.case = Some(Case {
            id: crate::ids::random_uuid_v4()?,
            claim,
            about,
            started_at: now,
            deadline: now.saturating_add(self.idle_seconds()),
            described: false,
            verifications,
            approvals: Vec::new(),
            waiting,
        });
        self.advance(turn).await
    }

    /// Asks the policy about the open case and follows its decision.
    async fn advance(&self, turn: &mut Turn) -> Result<(), EngineError> {
        let Some(mut case) = turn.case.take() else {
            return Ok(());
        };
        let runtime = match self.service.runtime(&turn.tenant) {
            Ok(runtime) => runtime,
            Err(e) => return self.failed(turn, case, e).await,
        };
        let decided = match self.decide(turn, &case, &runtime).await? {
            Ok(decided) => decided,
            Err(e) => return self.failed(turn, case, e).await,
        };
        if !case.described {
            self.bot(turn, findings::describe(&decided.facts)).await?;
            case.described = true;
        }
        match decided.decision().clone() {
            Decision::Allow { reason, .. } => {
                self.allow(turn, case, &runtime, &decided, reason).await
            }
            Decision::Deny { reason } => {
                self.bot(turn, reason).await?;
                self.end(
                    turn,
                    case,
                    EventKind::Resolved {
                        summary: "Nothing was changed.".to_owned(),
                    },
                )
                .await
            }
            Decision::Escalate { reason } => {
                self.end(turn, case, EventKind::Escalated { reason }).await
            }
            Decision::RequireVerification {
                requirements,
                reason,
            } => {
                self.offer(turn, case, &decided.facts, &requirements, reason)
                    .await
            }
            Decision::RequireApproval { approver, reason } => {
                self.ask_approval(turn, case, &decided, &approver, reason)
                    .await
            }
        }
    }

    /// Runs the resolver's decision, with a progress message when it takes
    /// long. The outer error is the audit log's (nothing goes on without a
    /// record); the inner one is told to the user.
    async fn decide(
        &self,
        turn: &mut Turn,
        case: &Case,
        runtime: &TenantRuntime,
    ) -> Result<Result<Decided, ResolveError>, EngineError> {
        let tenant = turn.tenant.clone();
        let user = turn.user.clone();
        // The conversation's own step-ups are sign-ins to Latchkey's app:
        // not evidence about the problem.
        let own_app = self
            .service
            .tenant_config(&tenant)
            .and_then(|c| c.sign_in)
            .map(|s| s.client_id);
        let mut inquiry = Inquiry::new(&tenant, &user, case.claim, self.now());
        inquiry.own_app_id = own_app.as_deref();
        inquiry.about = case.about.as_deref();
        inquiry.channel = turn.channel;
        inquiry.verifications = &case.verifications;
        inquiry.approvals = &case.approvals;
        let resolver = self.service.resolver();
        let decision = resolver.decide(runtime, &inquiry);
        // The progress message is written while the decision goes on, both
        // polled together: the decision holds the database's write lock at
        // times, and waiting on the lock without polling it would deadlock.
        let text = if case.described {
            "Checking again..."
        } else {
            "Looking into your account..."
        };
        let due = tokio::time::Instant::now() + self.settings.progress_after;
        let progress = async {
            tokio::time::sleep_until(due).await;
            let kind = EventKind::Progress {
                text: text.to_owned(),
            };
            self.store.append(&tenant, &user, self.now(), kind).await
        };
        tokio::pin!(decision, progress);
        let mut said = None;
        let result = loop {
            tokio::select! {
                result = &mut decision => break result,
                event = &mut progress, if said.is_none() => said = Some(event),
            }
        };
        // A progress message already under way is finished, so that what
        // was shown is recorded whole.
        if said.is_none() && tokio::time::Instant::now() >= due {
            said = Some(progress.await);
        }
        if let Some(event) = said {
            turn.events.push(event?);
        }
        match result {
            Err(ResolveError::Audit(e)) => Err(e.into()),
            other => Ok(other),
        }
    }

    /// The investigation or decision failed: tell the user, end the case.
    async fn failed(
        &self,
        turn: &mut Turn,
        case: Case,
        error: ResolveError,
    ) -> Result<(), EngineError> {
        tracing::warn!(tenant = %turn.tenant, requester = %turn.user, error = %error, "resolution failed");
        let reason = match &error {
            ResolveError::Investigate(
                crate::investigator::InvestigateError::RequesterNotFound { .. },
            ) => "I could not find your account in this directory, so I cannot help here. \
                   I have passed this to the help desk."
                .to_owned(),
            ResolveError::NoModule(_)
            | ResolveError::UnknownTenant(_)
            | ResolveError::Settings { .. } => {
                "I cannot decide requests for your organisation right now (its policy is not \
                 available). I have passed this to the help desk."
                    .to_owned()
            }
            other => format!(
                "I could not look into your account right now ({other}). Nothing was changed; \
                 try again in a few minutes, or contact the help desk."
            ),
        };
        self.end(turn, case, EventKind::Escalated { reason }).await
    }

    /// An allow: act, and report.
    async fn allow(
        &self,
        turn: &mut Turn,
        case: Case,
        runtime: &TenantRuntime,
        decided: &Decided,
        reason: String,
    ) -> Result<(), EngineError> {
        if decided.receipt.is_none() {
            let why = decided
                .not_signed
                .clone()
                .unwrap_or_else(|| "the host did not sign it".to_owned());
            let reason = format!(
                "The policy allowed this, but I may not act on it: {why}. I have passed this to the help desk."
            );
            return self.end(turn, case, EventKind::Escalated { reason }).await;
        }
        self.bot(turn, reason).await?;
        let tenant = turn.tenant.clone();
        let user = turn.user.clone();
        let acted = self
            .service
            .resolver()
            .act(runtime, &tenant, &user, decided)
            .await;
        match acted {
            Ok(execution) => self.report(turn, case, execution).await,
            Err(ResolveError::Audit(e)) => Err(e.into()),
            Err(e) => {
                let reason = format!(
                    "I could not make the change ({e}). I have passed this to the help desk."
                );
                self.end(turn, case, EventKind::Escalated { reason }).await
            }
        }
    }

    /// What the writes did: the secrets, then the resolution.
    async fn report(
        &self,
        turn: &mut Turn,
        case: Case,
        execution: Execution,
    ) -> Result<(), EngineError> {
        let now = self.now();
        let until = now.saturating_add(secs(self.settings.secret_ttl));
        let mut done: Vec<String> = Vec::new();
        let mut failure: Option<String> = None;
        for write in execution.writes {
            match write.status {
                WriteStatus::Applied(Applied::PasswordReset { password }) => {
                    let id = self.hold(turn, password, until)?;
                    self.say(
                        turn,
                        EventKind::Secret {
                            secret_id: id,
                            label: "Your temporary password (you will choose a new one when you \
                                    sign in)"
                                .to_owned(),
                        },
                    )
                    .await?;
                    done.push("set a temporary password".to_owned());
                }
                WriteStatus::Applied(Applied::TemporaryAccessPass(issued)) => {
                    let label = format!(
                        "Your Temporary Access Pass ({}{})",
                        issued.lifetime_minutes.map_or_else(
                            || "limited time".to_owned(),
                            |m| format!("valid {m} minutes")
                        ),
                        if issued.usable_once == Some(true) {
                            ", one use"
                        } else {
                            ""
                        }
                    );
                    match issued.pass {
                        Some(pass) => {
                            let id = self.hold(turn, pass, until)?;
                            self.say(
                                turn,
                                EventKind::Secret {
                                    secret_id: id,
                                    label,
                                },
                            )
                            .await?;
                            done.push("issued a Temporary Access Pass".to_owned());
                        }
                        None => {
                            failure = Some(
                                "the Temporary Access Pass was created but its value was lost \
                                 on the way; ask me again for a new one"
                                    .to_owned(),
                            );
                        }
                    }
                }
                WriteStatus::Applied(Applied::LostMethodsRemoved { removed }) => {
                    done.push(match removed.len() {
                        0 => "found no lost sign-in methods to remove".to_owned(),
                        1 => "removed the lost sign-in method".to_owned(),
                        n => format!("removed {n} lost sign-in methods"),
                    });
                }
                WriteStatus::Applied(Applied::SessionsRevoked) => {
                    done.push("signed you out everywhere else".to_owned());
                }
                WriteStatus::Failed(e) => {
                    failure.get_or_insert_with(|| e.to_string());
                }
                WriteStatus::NotAttempted => {}
            }
        }
        let did = if done.is_empty() {
            "nothing was changed".to_owned()
        } else {
            format!("I {}", join_and(&done))
        };
        let last = match failure {
            None => EventKind::Resolved {
                summary: format!("Done: {did}."),
            },
            Some(why) => EventKind::Escalated {
                reason: format!(
                    "Part of the change failed ({why}); {did}. I have passed this to the help desk."
                ),
            },
        };
        self.end(turn, case, last).await
    }

    /// Holds a secret for the turn's user; its id.
    fn hold(&self, turn: &Turn, secret: Secret, until: i64) -> Result<String, EngineError> {
        let id = hex::encode(crate::ids::random_bytes::<16>()?);
        self.vault
            .put(id.clone(), &turn.tenant, &turn.user, secret, until);
        Ok(id)
    }

    /// Offers every method the requirements accept that the requester can
    /// do; escalates when a requirement has none.
    async fn offer(
        &self,
        turn: &mut Turn,
        mut case: Case,
        facts: &Facts,
        requirements: &[AnyOf],
        reason: String,
    ) -> Result<(), EngineError> {
        let now = self.now();
        let sign_in = self
            .service
            .tenant_config(&turn.tenant)
            .and_then(|c| c.sign_in);
        let step_up_ready = sign_in.as_ref().is_some_and(|s| s.redirect_uri.is_some());
        let mail_from = sign_in.as_ref().and_then(|s| s.mail_from.clone());
        let possible = |method: Method| match method {
            Method::MfaStepUp => facts.mfa.mfa_capable && step_up_ready,
            Method::ManagerConfirmation => facts.requester.has_manager,
            Method::RecoveryEmailCode => facts.mfa.has_recovery_email && mail_from.is_some(),
        };
        if let Some(impossible) = requirements
            .iter()
            .find(|r| !r.0.iter().any(|m| possible(*m)))
        {
            let names: Vec<&str> = impossible.0.iter().map(|m| method_words(*m)).collect();
            let reason = format!(
                "{reason} I cannot verify you in a way your organisation accepts ({}): none is \
                 available for your account. I have passed this to the help desk.",
                join_or(&names)
            );
            return self.end(turn, case, EventKind::Escalated { reason }).await;
        }
        let methods: BTreeSet<Method> = requirements
            .iter()
            .flat_map(|r| r.0.iter().copied())
            .filter(|m| possible(*m))
            .collect();
        let mut offers = match std::mem::take(&mut case.waiting) {
            Waiting::Verification(offers) => offers,
            _ => Offers::default(),
        };
        offers.drop_expired(now);
        offers.methods = methods.iter().copied().collect();
        self.bot(turn, reason).await?;
        for method in &methods {
            let offered = match method {
                Method::MfaStepUp => self.offer_step_up(turn, facts, &mut offers).await,
                Method::RecoveryEmailCode => {
                    let from = mail_from.as_deref().unwrap_or_default();
                    self.offer_code(turn, &mut offers, from).await
                }
                Method::ManagerConfirmation => {
                    self.offer_manager(turn, &case, facts, &mut offers).await
                }
            };
            match offered {
                Ok(()) => {}
                Err(EngineError::Audit(e)) => return Err(e.into()),
                Err(EngineError::Database(e)) => return Err(e.into()),
                Err(e) => {
                    tracing::warn!(method = method_words(*method), error = %e, "a verification could not be offered");
                    self.bot(
                        turn,
                        format!("I could not start the {}: {e}.", method_words(*method)),
                    )
                    .await?;
                }
            }
        }
        if offers.is_empty() {
            let reason = "I could not start any verification your organisation accepts, so I \
                          cannot go on. I have passed this to the help desk."
                .to_owned();
            return self.end(turn, case, EventKind::Escalated { reason }).await;
        }
        let deadline = offers
            .latest_deadline()
            .unwrap_or(now)
            .max(now.saturating_add(self.idle_seconds()));
        case.deadline = deadline;
        case.waiting = Waiting::Verification(offers);
        turn.case = Some(case);
        Ok(())
    }

    async fn offer_step_up(
        &self,
        turn: &mut Turn,
        facts: &Facts,
        offers: &mut Offers,
    ) -> Result<(), EngineError> {
        if let Some(live) = &offers.step_up {
            let url = live.url.clone();
            self.say(turn, EventKind::StepUp { url }).await?;
            return self
                .bot(
                    turn,
                    "Use the sign-in link above to approve with your authenticator.".to_owned(),
                )
                .await;
        }
        let (oidc, redirect_uri) = self.oidc(&turn.tenant)?;
        let start = self
            .verifier
            .begin_step_up(
                &oidc,
                &turn.tenant,
                &turn.user,
                Some(facts.requester.user_principal_name.as_str()).filter(|upn| !upn.is_empty()),
                &redirect_uri,
            )
            .await?;
        self.store
            .put_flow(
                &start.state,
                &Flow::StepUp {
                    tenant: turn.tenant.clone(),
                    user: turn.user.clone(),
                },
                start.expires_at,
            )
            .await?;
        offers.step_up = Some(StepUpOffer {
            url: start.authorize_url.clone(),
            expires_at: start.expires_at,
            instance: self.instance.clone(),
        });
        self.record_verification(turn, Method::MfaStepUp, "offered", None)
            .await?;
        self.say(
            turn,
            EventKind::StepUp {
                url: start.authorize_url,
            },
        )
        .await?;
        self.bot(
            turn,
            "Open the link, sign in as yourself and approve the request in Microsoft \
             Authenticator. I will carry on here as soon as you have."
                .to_owned(),
        )
        .await
    }

    async fn offer_code(
        &self,
        turn: &mut Turn,
        offers: &mut Offers,
        mail_from: &str,
    ) -> Result<(), EngineError> {
        if let Some(live) = &offers.code {
            let text = format!(
                "I sent a code to {}; type it here when it arrives.",
                live.to
            );
            return self.bot(turn, text).await;
        }
        let graph = self.graph(&turn.tenant)?;
        match self
            .verifier
            .send_email_code(&graph, mail_from, &turn.tenant, &turn.user)
            .await
        {
            Ok(sent) => {
                offers.code = Some(CodeOffer {
                    to: sent.to_masked.clone(),
                    expires_at: sent.expires_at,
                    instance: self.instance.clone(),
                });
                self.record_verification(turn, Method::RecoveryEmailCode, "offered", None)
                    .await?;
                self.say(
                    turn,
                    EventKind::CodeSent {
                        to: sent.to_masked.clone(),
                    },
                )
                .await?;
                let text = format!(
                    "I sent a code to {}. Type it here when it arrives; it works for 10 minutes.",
                    sent.to_masked
                );
                self.bot(turn, text).await
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn offer_manager(
        &self,
        turn: &mut Turn,
        case: &Case,
        facts: &Facts,
        offers: &mut Offers,
    ) -> Result<(), EngineError> {
        if let Some(live) = &offers.manager {
            let text = format!(
                "I asked {} to confirm it is you; I will tell you when they answer.",
                live.name
            );
            return self.bot(turn, text).await;
        }
        let graph = self.graph(&turn.tenant)?;
        let manager = approvals::manager_of(&graph, &turn.user)
            .await
            .map_err(approval_error)?
            .ok_or_else(|| EngineError::Approval(ApprovalError::NoManager(turn.user.clone())))?;
        let ask = self
            .verifier
            .ask_manager(&turn.tenant, &turn.user, &manager.id)
            .await?;
        let now = self.now();
        self.store
            .ensure(&turn.tenant, &manager.id, &manager.display_name, now)
            .await?;
        let requester = requester_label(facts, &turn.display_name);
        self.store
            .append(
                &turn.tenant,
                &manager.id,
                now,
                EventKind::ApprovalRequest {
                    request_id: ask.id.clone(),
                    requester: requester.clone(),
                    reason: format!(
                        "{requester} asks me for help with {}. Before I help, please confirm \
                         this request really comes from them. Confirm only if you have checked \
                         with them yourself, in person or by phone.",
                        claim_words(case.claim)
                    ),
                    kind: "manager-confirmation".to_owned(),
                    expires_at: ask.expires_at,
                },
            )
            .await?;
        offers.manager = Some(ManagerOffer {
            request_id: ask.id,
            name: manager.display_name.clone(),
            expires_at: ask.expires_at,
        });
        self.service
            .audit()
            .append(
                &turn.tenant,
                Kind::Verification,
                json!({
                    "event": "offered",
                    "method": "manager-confirmation",
                    "requester": turn.user,
                    "manager": manager.id,
                }),
            )
            .await?;
        let text = format!(
            "I asked your manager {} to confirm it is you. I will tell you here when they answer.",
            manager.display_name
        );
        self.bot(turn, text).await
    }

    async fn check_code(&self, turn: &mut Turn, code: &str) -> Result<(), EngineError> {
        let checked = self
            .verifier
            .check_email_code(&turn.tenant, &turn.user, code)
            .await;
        let method = Method::RecoveryEmailCode;
        match checked {
            Ok(passed) => {
                self.record_verification(turn, method, "passed", None)
                    .await?;
                if let Some(case) = turn.case.as_mut() {
                    if let Waiting::Verification(offers) = &mut case.waiting {
                        offers.code = None;
                    }
                    case.verifications.push(passed.verification());
                }
                self.bot(turn, "That is the right code, thank you.".to_owned())
                    .await?;
                self.advance(turn).await
            }
            Err(VerificationError::Wrong { tries_left }) => {
                self.record_verification(turn, method, "failed", Some("wrong code"))
                    .await?;
                let text = format!(
                    "That code is not right; you can try {tries_left} more time{}.",
                    if tries_left == 1 { "" } else { "s" }
                );
                self.bot(turn, text).await
            }
            Err(
                e @ (VerificationError::TooManyTries
                | VerificationError::Expired
                | VerificationError::NoCode),
            ) => {
                self.record_verification(turn, method, "failed", Some(&e.to_string()))
                    .await?;
                if let Some(Waiting::Verification(offers)) =
                    turn.case.as_mut().map(|c| &mut c.waiting)
                {
                    offers.code = None;
                }
                let text = format!(
                    "{}. Say \"yes\" and I will send a new code.",
                    capitalise(&e.to_string())
                );
                self.bot(turn, text).await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The manager said it was not the requester.
    async fn manager_refused(&self, turn: &mut Turn, name: &str) -> Result<(), EngineError> {
        let text = format!("{name} did not confirm that this request comes from you.");
        self.bot(turn, text).await?;
        let still_open = turn
            .case
            .as_ref()
            .is_some_and(|c| matches!(&c.waiting, Waiting::Verification(o) if !o.is_empty()));
        if still_open {
            return self
                .bot(
                    turn,
                    "You can still verify another way, as offered above.".to_owned(),
                )
                .await;
        }
        let Some(case) = turn.case.take() else {
            return Ok(());
        };
        self.end(
            turn,
            case,
            EventKind::Resolved {
                summary: "Nothing was changed.".to_owned(),
            },
        )
        .await
    }

    /// A require-approval decision: ask the approver, once.
    async fn ask_approval(
        &self,
        turn: &mut Turn,
        mut case: Case,
        decided: &Decided,
        approver: &Approver,
        reason: String,
    ) -> Result<(), EngineError> {
        let now = self.now();
        let given = case
            .approvals
            .iter()
            .any(|a| same_approver(&a.via, approver));
        if given && !decided.facts.target_is_self {
            // A request about someone else's account can only ever be
            // routed: the approver takes it from here.
            let summary = "Your request was approved and handed to the approvers, who will \
                           take it from here. I never change another person's account myself."
                .to_owned();
            return self.end(turn, case, EventKind::Resolved { summary }).await;
        }
        if given {
            let reason = format!(
                "{reason} The approval was given, yet your organisation's policy still asks for \
                 it, so I cannot go on. I have passed this to the help desk."
            );
            return self.end(turn, case, EventKind::Escalated { reason }).await;
        }
        if let Waiting::Approval {
            approver_name,
            expires_at,
            ..
        } = &case.waiting
            && *expires_at >= now
        {
            let text = format!("I am still waiting for {approver_name} to approve.");
            turn.case = Some(case);
            return self.bot(turn, text).await;
        }
        self.bot(turn, reason.clone()).await?;
        let graph = self.graph(&turn.tenant)?;
        let requester = requester_label(&decided.facts, &turn.display_name);
        let about = match &case.about {
            Some(account) if !decided.facts.target_is_self => {
                format!(" about the account \"{account}\"")
            }
            _ => String::new(),
        };
        let verified = if case.verifications.is_empty() {
            ""
        } else {
            " They have passed identity verification."
        };
        let card_reason = format!(
            "{requester} asks for help with {}{about}.{verified} Policy: {reason}",
            claim_words(case.claim)
        );
        let asked = self
            .approvals
            .ask(
                self.service.audit(),
                &graph,
                &Ask {
                    tenant: &turn.tenant,
                    requester: &turn.user,
                    requester_name: &requester,
                    approver,
                    reason: &card_reason,
                    decision_id: decided.decision_id.as_str(),
                    now,
                    ttl: self.settings.approval_ttl,
                },
            )
            .await;
        let request = match asked {
            Ok(request) => request,
            Err(ApprovalError::Audit(e)) => return Err(e.into()),
            Err(ApprovalError::Database(e)) => return Err(e.into()),
            Err(e) => {
                let reason = format!(
                    "I could not ask for the approval ({e}). I have passed this to the help desk."
                );
                return self.end(turn, case, EventKind::Escalated { reason }).await;
            }
        };
        if let Some(manager) = &request.manager {
            self.store
                .ensure(&turn.tenant, manager, &request.approver_name, now)
                .await?;
            self.store
                .append(&turn.tenant, manager, now, approval_card(&request))
                .await?;
        }
        let text = format!(
            "I asked {} to approve. I will tell you here when they answer; the request expires {}.",
            request.approver_name,
            findings::within(request.expires_at - now)
        );
        self.bot(turn, text).await?;
        case.deadline = request
            .expires_at
            .max(now.saturating_add(self.idle_seconds()));
        case.waiting = Waiting::Approval {
            request_id: request.id,
            approver_name: request.approver_name,
            expires_at: request.expires_at,
        };
        turn.case = Some(case);
        Ok(())
    }

    /// The approver's side of an answer: the card answered, and a word.
    async fn answered(
        &self,
        speaker: &Speaker,
        request_id: &str,
        approve: bool,
        requester: &str,
    ) -> Result<Vec<Event>, EngineError> {
        let now = self.now();
        let answered = self
            .store
            .append(
                &speaker.tenant,
                &speaker.user,
                now,
                EventKind::RequestAnswered {
                    request_id: request_id.to_owned(),
                    approved: approve,
                },
            )
            .await?;
        let text = format!(
            "Thank you: I recorded your answer ({}) and will let {requester} know.",
            if approve { "yes" } else { "no" }
        );
        let said = self
            .store
            .append(
                &speaker.tenant,
                &speaker.user,
                now,
                EventKind::BotMessage { text },
            )
            .await?;
        Ok(vec![answered, said])
    }

    /// The requester's side of an approval answer.
    async fn continue_after_approval(
        &self,
        request: &approvals::ApprovalRequest,
        approved: bool,
    ) -> Result<(), EngineError> {
        let lock = self.lock(&request.tenant, &request.requester);
        let _turn = lock.lock().await;
        let Some(conversation) = self.store.load(&request.tenant, &request.requester).await? else {
            return Ok(());
        };
        let mut turn = self.turn_of(&request.tenant, &request.requester, conversation);
        let waiting_for_it = turn.case.as_ref().is_some_and(|c| {
            matches!(&c.waiting, Waiting::Approval { request_id, .. } if *request_id == request.id)
        });
        if !waiting_for_it {
            return Ok(());
        }
        let Some(mut case) = turn.case.take() else {
            return Ok(());
        };
        let who = request
            .answered_by
            .as_ref()
            .map_or_else(String::new, ToString::to_string);
        if approved {
            case.approvals.push(Approval {
                approver_id: who,
                via: request.approver.clone(),
                approved_at: request.answered_at.unwrap_or_else(|| self.now()),
            });
            case.waiting = Waiting::Nothing;
            case.deadline = self.now().saturating_add(self.idle_seconds());
            turn.case = Some(case);
            let text = format!(
                "{} approved your request.",
                capitalise(&request.approver_name)
            );
            self.bot(&mut turn, text).await?;
            self.advance(&mut turn).await?;
        } else {
            let text = format!(
                "{} did not approve your request, so I changed nothing.",
                capitalise(&request.approver_name)
            );
            self.bot(&mut turn, text).await?;
            self.end(
                &mut turn,
                case,
                EventKind::Resolved {
                    summary: "Not approved; nothing was changed.".to_owned(),
                },
            )
            .await?;
        }
        self.save(&turn).await
    }

    /// Reminds the requester what the case waits for.
    async fn remind(&self, turn: &mut Turn, waiting: &Waiting) -> Result<(), EngineError> {
        let text = match waiting {
            Waiting::Verification(offers) => {
                let mut ways = Vec::new();
                if offers.step_up.is_some() {
                    ways.push("approve the sign-in with the link above".to_owned());
                }
                if let Some(code) = &offers.code {
                    ways.push(format!("type the code I sent to {}", code.to));
                }
                if let Some(manager) = &offers.manager {
                    ways.push(format!("wait for {} to confirm", manager.name));
                }
                if ways.is_empty() {
                    "I am waiting for you to verify. Say \"yes\" to get a new link or code, or \
                     \"cancel\" to stop."
                        .to_owned()
                } else {
                    format!(
                        "To go on, {}. Say \"cancel\" to stop.",
                        join_or(&ways.iter().map(String::as_str).collect::<Vec<_>>())
                    )
                }
            }
            Waiting::Approval { approver_name, .. } => format!(
                "I am waiting for {approver_name} to approve your request. Say \"cancel\" to stop."
            ),
            Waiting::Nothing => UNCLEAR.to_owned(),
        };
        self.bot(turn, text).await
    }

    /// "Never mind".
    async fn cancel(&self, turn: &mut Turn) -> Result<(), EngineError> {
        let Some(case) = turn.case.take() else {
            return Ok(());
        };
        self.bot(
            turn,
            "All right, I stopped. Nothing was changed.".to_owned(),
        )
        .await?;
        self.end(turn, case, EventKind::Cancelled).await
    }

    /// Ends the case with `last`, withdrawing what it waited for.
    async fn end(&self, turn: &mut Turn, case: Case, last: EventKind) -> Result<(), EngineError> {
        self.withdraw(&turn.tenant, &case).await?;
        turn.case = None;
        self.say(turn, last).await
    }

    /// Withdraws the case's pending approval request, telling the approver.
    async fn withdraw(&self, tenant: &TenantId, case: &Case) -> Result<(), EngineError> {
        let Waiting::Approval { request_id, .. } = &case.waiting else {
            return Ok(());
        };
        let withdrawn = self
            .approvals
            .withdraw(self.service.audit(), request_id, self.now())
            .await
            .map_err(approval_error)?;
        if let Some(request) = withdrawn
            && let Some(manager) = &request.manager
        {
            self.store
                .append(
                    tenant,
                    manager,
                    self.now(),
                    EventKind::BotMessage {
                        text: format!(
                            "{} withdrew their request; there is nothing for you to do.",
                            request.requester_name
                        ),
                    },
                )
                .await?;
        }
        Ok(())
    }

    /// Ends the open case if it is past its deadline.
    async fn expire_if_due(&self, turn: &mut Turn) -> Result<(), EngineError> {
        let now = self.now();
        let Some(case) = turn.case.take_if(|c| c.deadline < now) else {
            return Ok(());
        };
        let what = match &case.waiting {
            Waiting::Approval { approver_name, .. } => {
                format!("{approver_name} did not answer in time")
            }
            Waiting::Verification(_) => "the verification was not completed in time".to_owned(),
            Waiting::Nothing => "nothing happened for a while".to_owned(),
        };
        let text = format!(
            "I closed your request: {what}. Nothing was changed; tell me again if you still need help."
        );
        self.bot(turn, text).await?;
        self.end(turn, case, EventKind::Cancelled).await
    }

    /// Shows the speaker the pending group approvals they may answer.
    async fn deliver_group_requests(&self, turn: &mut Turn) -> Result<(), EngineError> {
        let now = self.now();
        self.group_checks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((turn.tenant.clone(), turn.user.clone()), now);
        let pending = self
            .approvals
            .undelivered_group_requests(&turn.tenant, &turn.user, now)
            .await
            .map_err(approval_error)?;
        if pending.is_empty() {
            return Ok(());
        }
        let Ok(graph) = self.graph(&turn.tenant) else {
            return Ok(());
        };
        for request in pending {
            let Approver::Group(group) = &request.approver else {
                continue;
            };
            match approvals::is_member(&graph, &turn.user, group).await {
                Ok(true) => {
                    self.say(turn, approval_card(&request)).await?;
                }
                Ok(false) => {}
                Err(e) => {
                    // Tried again at the next check.
                    tracing::warn!(error = %e, "group membership could not be read");
                    continue;
                }
            }
            self.approvals
                .mark_checked(&request.id, &turn.user)
                .await
                .map_err(approval_error)?;
        }
        Ok(())
    }

    fn checked_lately(&self, tenant: &TenantId, user: &UserId) -> bool {
        let now = self.now();
        self.group_checks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(tenant.clone(), user.clone()))
            .is_some_and(|at| now - at < GROUP_CHECK_INTERVAL)
    }

    // ---------------------------------------------------------------------
    // Records

    async fn note_screened(
        &self,
        turn: &Turn,
        raw: &str,
        screened: &screening::Screened,
        intent: &Intent,
        flags: &[Flag],
    ) -> Result<(), EngineError> {
        let about = match intent {
            Intent::About { account, .. } => Some(account.as_str()),
            _ => None,
        };
        self.service
            .audit()
            .append(
                &turn.tenant,
                Kind::Note,
                json!({
                    "event": "screened-input",
                    "requester": turn.user,
                    "channel": store::channel_name(turn.channel),
                    "flags": flags.iter().map(|f| f.name()).collect::<Vec<_>>(),
                    "intent": intent.name(),
                    "claim": intent.claim().map(claim_name),
                    "about": about,
                    "chars": screened.chars,
                    "text_sha256": hex::encode(Sha256::digest(raw.as_bytes())),
                }),
            )
            .await?;
        Ok(())
    }

    async fn record_verification(
        &self,
        turn: &Turn,
        method: Method,
        event: &str,
        reason: Option<&str>,
    ) -> Result<(), EngineError> {
        let mut body = json!({
            "event": event,
            "method": method_name(method),
            "requester": turn.user,
            "case": turn.case.as_ref().map(|c| c.id.as_str()),
        });
        if let Some(reason) = reason {
            body["reason"] = json!(reason);
        }
        self.service
            .audit()
            .append(&turn.tenant, Kind::Verification, body)
            .await?;
        Ok(())
    }

    // ---------------------------------------------------------------------
    // Plumbing

    fn now(&self) -> i64 {
        (self.clock)()
    }

    fn idle_seconds(&self) -> i64 {
        secs(self.settings.idle_timeout)
    }

    fn known(&self, tenant: &TenantId) -> Result<(), EngineError> {
        match self.service.tenant(tenant) {
            Some(_) => Ok(()),
            None => Err(EngineError::UnknownTenant(tenant.clone())),
        }
    }

    fn lock(&self, tenant: &TenantId, user: &UserId) -> Arc<AsyncMutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Forget locks nobody holds, so the map stays as small as the set
        // of conversations in flight.
        if locks.len() > 1024 {
            locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        Arc::clone(
            locks
                .entry((tenant.clone(), user.clone()))
                .or_insert_with(|| Arc::new(AsyncMutex::new(()))),
        )
    }

    fn graph(&self, tenant: &TenantId) -> Result<GraphClient, EngineError> {
        self.service
            .graph(tenant)
            .ok_or_else(|| EngineError::UnknownTenant(tenant.clone()))
    }

    /// The tenant's OIDC client and redirect URI.
    fn oidc(
        &self,
        tenant: &TenantId,
    ) -> Result<(crate::verification::OidcClient, String), EngineError> {
        let unavailable = |reason: String| EngineError::SignInUnavailable {
            tenant: tenant.clone(),
            reason,
        };
        let config = self
            .service
            .tenant_config(tenant)
            .ok_or_else(|| EngineError::UnknownTenant(tenant.clone()))?;
        let sign_in = config.sign_in.ok_or_else(|| {
            unavailable(format!(
                "add a [tenants.{tenant}.sign_in] table with redirect_uri"
            ))
        })?;
        let redirect_uri = sign_in.redirect_uri.clone().ok_or_else(|| {
            unavailable(format!("[tenants.{tenant}.sign_in] has no redirect_uri"))
        })?;
        let oidc = sign_in
            .oidc_client(tenant)
            .map_err(|e| unavailable(e.to_string()))?;
        Ok((oidc, redirect_uri))
    }

    /// Loads (or starts) the speaker's conversation for a turn, with the
    /// channel and name they speak with now.
    async fn open(&self, speaker: &Speaker) -> Result<Turn, EngineError> {
        let state = self
            .store
            .load(&speaker.tenant, &speaker.user)
            .await?
            .map(|c| c.state)
            .unwrap_or_default();
        Ok(Turn {
            tenant: speaker.tenant.clone(),
            user: speaker.user.clone(),
            channel: speaker.channel,
            display_name: speaker.display_name.clone(),
            case: self.fresh(state.case),
            events: Vec::new(),
        })
    }

    fn turn_of(&self, tenant: &TenantId, user: &UserId, conversation: Conversation) -> Turn {
        Turn {
            tenant: tenant.clone(),
            user: user.clone(),
            channel: conversation.channel,
            display_name: conversation.display_name,
            case: self.fresh(conversation.state.case),
            events: Vec::new(),
        }
    }

    /// A stored case without the offers an earlier process made that can
    /// no longer complete.
    fn fresh(&self, mut case: Option<Case>) -> Option<Case> {
        if let Some(Waiting::Verification(offers)) = case.as_mut().map(|c| &mut c.waiting) {
            offers.drop_other_instances(&self.instance);
        }
        case
    }

    async fn save(&self, turn: &Turn) -> Result<(), EngineError> {
        let conversation = Conversation {
            channel: turn.channel,
            display_name: turn.display_name.clone(),
            state: State {
                case: turn.case.clone(),
            },
        };
        self.store
            .save(&turn.tenant, &turn.user, &conversation, self.now())
            .await
    }

    async fn say(&self, turn: &mut Turn, kind: EventKind) -> Result<(), EngineError> {
        let event = self
            .store
            .append(&turn.tenant, &turn.user, self.now(), kind)
            .await?;
        turn.events.push(event);
        Ok(())
    }

    async fn bot(&self, turn: &mut Turn, text: String) -> Result<(), EngineError> {
        self.say(turn, EventKind::BotMessage { text }).await
    }
}

/// The card an approver sees.
fn approval_card(request: &approvals::ApprovalRequest) -> EventKind {
    EventKind::ApprovalRequest {
        request_id: request.id.clone(),
        requester: request.requester_name.clone(),
        reason: request.reason.clone(),
        kind: "approval".to_owned(),
        expires_at: request.expires_at,
    }
}

fn approval_error(e: ApprovalError) -> EngineError {
    match e {
        ApprovalError::Audit(e) => EngineError::Audit(e),
        ApprovalError::Database(e) => EngineError::Database(e),
        ApprovalError::Random(e) => EngineError::Random(e),
        ApprovalError::Unknown(id) => EngineError::UnknownRequest(id),
        ApprovalError::NotApprover { why, .. } => EngineError::NotApprover(why.to_owned()),
        e @ (ApprovalError::Closed(_) | ApprovalError::Expired) => {
            EngineError::RequestClosed(e.to_string())
        }
        other => EngineError::Approval(other),
    }
}

fn same_approver(a: &Approver, b: &Approver) -> bool {
    match (a, b) {
        (Approver::Manager, Approver::Manager) => true,
        (Approver::Group(a), Approver::Group(b)) => a.eq_ignore_ascii_case(b),
        _ => false,
    }
}

/// "Adele Vance (adele.vance@contoso.com)".
fn requester_label(facts: &Facts, fallback: &str) -> String {
    let name = if facts.requester.display_name.is_empty() {
        fallback
    } else {
        &facts.requester.display_name
    };
    if facts.requester.user_principal_name.is_empty() {
        name.to_owned()
    } else {
        format!("{name} ({})", facts.requester.user_principal_name)
    }
}

fn claim_words(claim: Claim) -> &'static str {
    match claim {
        Claim::ForgotPassword => "a forgotten password",
        Claim::LostMfaDevice => "a lost MFA device",
        Claim::LockedOut => "a locked account",
        Claim::PasswordExpired => "an expired password",
        Claim::CannotSignIn => "trouble signing in",
    }
}

fn method_name(method: Method) -> &'static str {
    match method {
        Method::MfaStepUp => "mfa-step-up",
        Method::ManagerConfirmation => "manager-confirmation",
        Method::RecoveryEmailCode => "recovery-email-code",
    }
}

fn method_words(method: Method) -> &'static str {
    match method {
        Method::MfaStepUp => "MFA sign-in",
        Method::ManagerConfirmation => "confirmation by your manager",
        Method::RecoveryEmailCode => "code to your recovery email",
    }
}

fn join_with(items: &[&str], last: &str) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., tail] => format!("{} {last} {tail}", init.join(", ")),
    }
}

fn join_or(items: &[&str]) -> String {
    join_with(items, "or")
}

fn join_and(items: &[String]) -> String {
    join_with(&items.iter().map(String::as_str).collect::<Vec<_>>(), "and")
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

fn system_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_as_the_web_chat_reads_them() {
        let event = Event {
            seq: 3,
            at: 10,
            kind: EventKind::ApprovalRequest {
                request_id: "r".into(),
                requester: "Alex".into(),
                reason: "why".into(),
                kind: "manager-confirmation".into(),
                expires_at: 20,
            },
        };
        let value = serde_json::to_value(&event).unwrap();
        assert_eq!(value["type"], "approval-request");
        assert_eq!(value["seq"], 3);
        assert_eq!(value["kind"], "manager-confirmation");
        let back: Event = serde_json::from_value(value).unwrap();
        assert_eq!(back, event);
        assert_eq!(
            serde_json::to_value(EventKind::Cancelled).unwrap(),
            json!({"type": "cancelled"})
        );
    }

    #[test]
    fn lists_read_naturally() {
        assert_eq!(join_or(&["a"]), "a");
        assert_eq!(join_or(&["a", "b", "c"]), "a, b or c");
        assert_eq!(join_and(&["x".to_owned(), "y".to_owned()]), "x and y");
        assert_eq!(capitalise("the members"), "The members");
    }
}
