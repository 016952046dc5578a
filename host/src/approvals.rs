//! Approvals: when a tenant's policy decides `require-approval`, a request to
//! the approver it names, with an expiry, that only the approver's own
//! verified identity can answer.
//!
//! * **Who may answer.** For [`Approver::Manager`], the requester's manager
//!   in Entra ID when the request was made (`GET /users/{id}/manager`), by
//!   object id. For [`Approver::Group`], any transitive member of the group,
//!   checked through Graph when they answer
//!   (`GET /users/{id}/transitiveMemberOf`), so that someone removed from
//!   the group since cannot answer. Nobody answers their own request. The
//!   identity comes from the chat channel's verification (the caller passes
//!   it), never from anything typed.
//! * **Once.** A request is answered once: the update that records the
//!   answer only applies to a pending request, so two answers racing each
//!   other cannot both count.
//! * **Expiry.** Default [`DEFAULT_APPROVAL_TTL`]; an expired request cannot
//!   be answered, and [`Approvals::expire_due`] closes those past their time.
//! * **Audit.** Every request asked, approved, denied, expired or withdrawn
//!   is an `approval` entry in the tenant's chain; an answer from someone
//!   who may not give it is a `refusal` entry, and changes nothing.
//!
//! Requests live in the service's SQLite database (table
//! `approval_requests`, migration `20261126030000_conversations.sql`);
//! nothing in them is secret.

use std::time::Duration;

use crate::audit::Db;
use latchkey_policy::Approver;
use rusqlite::{OptionalExtension as _, params};
use serde_json::{Value, json};

use crate::audit::{AuditError, AuditLog, Kind};
use crate::graph::{GraphClient, GraphError};
use crate::ids::{RandomError, UserId};
use crate::tenant::TenantId;

/// How long an approval request waits for its answer by default: 24 hours,
/// a working day for an approver who is in meetings or another time zone.
pub const DEFAULT_APPROVAL_TTL: Duration = Duration::from_secs(24 * 3600);

/// Where a request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Waiting for the approver.
    Pending,
    /// Approved by the approver.
    Approved,
    /// Refused by the approver.
    Denied,
    /// Nobody answered in time.
    Expired,
    /// The requester cancelled, or the conversation ended, first.
    Withdrawn,
}

impl Status {
    /// The name stored and recorded.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Expired => "expired",
            Status::Withdrawn => "withdrawn",
        }
    }

    fn parse(s: &str) -> Option<Status> {
        [
            Status::Pending,
            Status::Approved,
            Status::Denied,
            Status::Expired,
            Status::Withdrawn,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An approval request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalRequest {
    /// Its id (a random UUID).
    pub id: String,
    /// The tenant.
    pub tenant: TenantId,
    /// Who asked.
    pub requester: UserId,
    /// The requester's display name, for the approver.
    pub requester_name: String,
    /// Who may approve, as the policy named it.
    pub approver: Approver,
    /// The manager's object id, for [`Approver::Manager`].
    pub manager: Option<UserId>,
    /// The approver's name, for the requester ("Megan Bowen", "the members
    /// of IT Service Desk").
    pub approver_name: String,
    /// The policy's reason, for the approver and the requester.
    pub reason: String,
    /// When it was made, Unix seconds.
    pub created_at: i64,
    /// When it stops accepting an answer, Unix seconds.
    pub expires_at: i64,
    /// Where it stands.
    pub status: Status,
    /// Who answered, once answered.
    pub answered_by: Option<UserId>,
    /// When, once answered, expired or withdrawn.
    pub answered_at: Option<i64>,
    /// The users already checked for it (for group approvals): shown it
    /// when they were members, skipped when not.
    pub checked: Vec<UserId>,
}

/// A request to make.
#[derive(Clone, Copy, Debug)]
pub struct Ask<'a> {
    /// The tenant.
    pub tenant: &'a TenantId,
    /// Who asks (the verified requester).
    pub requester: &'a UserId,
    /// The requester's display name.
    pub requester_name: &'a str,
    /// Who may approve, as the decision named it.
    pub approver: &'a Approver,
    /// The decision's reason.
    pub reason: &'a str,
    /// The decision that asked for it, for the audit entry.
    pub decision_id: &'a str,
    /// Now, Unix seconds.
    pub now: i64,
    /// How long it waits.
    pub ttl: Duration,
}

/// An answer to a request, by the verified identity of whoever gave it.
#[derive(Clone, Copy, Debug)]
pub struct Answer<'a> {
    /// The answerer's tenant.
    pub tenant: &'a TenantId,
    /// The request.
    pub id: &'a str,
    /// Who answers, as the chat channel verified them.
    pub answered_by: &'a UserId,
    /// Approve (true) or refuse.
    pub approve: bool,
    /// Now, Unix seconds.
    pub now: i64,
}

/// Why an approval could not be asked for or answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApprovalError {
    /// The policy named the manager, and the requester has none in Entra ID.
    #[error("{0} has no manager in Entra ID, so no manager can approve")]
    NoManager(UserId),
    /// The policy named a group whose id is not a GUID (the module's fault).
    #[error("the policy named the approver group {0:?}, which is not an Entra object id")]
    InvalidGroup(String),
    /// No such request (or not in this tenant).
    #[error("there is no approval request {0}")]
    Unknown(String),
    /// The request has already been answered, has expired or was withdrawn.
    #[error("the approval request is already {0}")]
    Closed(Status),
    /// The request is past its expiry.
    #[error("the approval request has expired")]
    Expired,
    /// The person answering is not the approver the policy named.
    #[error("{who} may not answer this approval request: {why}")]
    NotApprover {
        /// Who tried.
        who: UserId,
        /// Why they may not.
        why: &'static str,
    },
    /// A Graph read failed.
    #[error("reading the {read} from Graph failed: {source}")]
    Graph {
        /// Which read.
        read: &'static str,
        /// Why.
        #[source]
        source: GraphError,
    },
    /// Graph answered something it does not document.
    #[error("Graph's answer for the {0} is not what Graph documents")]
    InvalidResponse(&'static str),
    /// The audit log failed: nothing is done without a record.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The database failed.
    #[error("approvals database error: {0}")]
    Database(#[from] crate::audit::DbError),
    /// A stored row is not what this version writes.
    #[error("approval request {id} is stored with an invalid {field}")]
    Corrupt {
        /// The request.
        id: String,
        /// The column.
        field: &'static str,
    },
    /// No randomness for the id.
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// A person in the directory, as a request names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    /// Object id.
    pub id: UserId,
    /// Display name.
    pub display_name: String,
}

/// The requester's manager, if Entra ID records one (`None` on Graph's 404).
pub async fn manager_of(
    graph: &GraphClient,
    user: &UserId,
) -> Result<Option<Person>, ApprovalError> {
    let path = format!(
        "{}/manager?$select=id,displayName",
        GraphClient::user_path(user.as_str())
    );
    let response = match graph.get(&path).await {
        Ok(response) => response,
        Err(e) if e.status().map(|s| s.as_u16()) == Some(404) => return Ok(None),
        Err(source) => {
            return Err(ApprovalError::Graph {
                read: "manager",
                source,
            });
        }
    };
    let id = response.body["id"]
        .as_str()
        .and_then(|id| id.parse::<UserId>().ok())
        .ok_or(ApprovalError::InvalidResponse("manager"))?;
    let display_name = response.body["displayName"]
        .as_str()
        .unwrap_or(id.as_str())
        .to_owned();
    Ok(Some(Person { id, display_name }))
}

/// Whether `user` is a member of `group`, directly or through nested groups.
pub async fn is_member(
    graph: &GraphClient,
    user: &UserId,
    group: &str,
) -> Result<bool, ApprovalError> {
    let path = format!(
        "{}/transitiveMemberOf?$select=id",
        GraphClient::user_path(user.as_str())
    );
    let pages = graph
        .get_all(&path)
        .await
        .map_err(|source| ApprovalError::Graph {
            read: "group memberships",
            source,
        })?;
    Ok(pages
        .items
        .iter()
        .filter_map(|item| item["id"].as_str())
        .any(|id| id.eq_ignore_ascii_case(group)))
}

/// The approval requests in the service's database.
#[derive(Clone, Debug)]
pub struct Approvals {
    db: Db,
}

const COLUMNS: &str = "id, tenant, requester, requester_name, approver_kind, approver_ref, \
    approver_name, reason, created_at, expires_at, status, answered_by, answered_at, checked";

type Row = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    String,
    Option<String>,
    Option<i64>,
    String,
);

impl Approvals {
    /// The requests in the audit log's database (migrated when the log was
    /// opened).
    pub fn new(audit: &AuditLog) -> Approvals {
        Approvals {
            db: audit.db().clone(),
        }
    }

    /// Makes a request to the approver `ask` names and records it. For the
    /// manager, reads who the manager is now; fails with
    /// [`ApprovalError::NoManager`] when there is none.
    pub async fn ask(
        &self,
        audit: &AuditLog,
        graph: &GraphClient,
        ask: &Ask<'_>,
    ) -> Result<ApprovalRequest, ApprovalError> {
        let (kind, reference, manager, approver_name) = match ask.approver {
            Approver::Manager => {
                let manager = manager_of(graph, ask.requester)
                    .await?
                    .ok_or_else(|| ApprovalError::NoManager(ask.requester.clone()))?;
                (
                    "manager",
                    manager.id.to_string(),
                    Some(manager.id),
                    manager.display_name,
                )
            }
            Approver::Group(group) => {
                let group = crate::ids::canonical_guid(group)
                    .ok_or_else(|| ApprovalError::InvalidGroup(group.chars().take(80).collect()))?;
                let name = group_name(graph, &group).await;
                ("group", group, None, name)
            }
        };
        let ttl = i64::try_from(ask.ttl.as_secs()).unwrap_or(i64::MAX);
        let request = ApprovalRequest {
            id: crate::ids::random_uuid_v4()?,
            tenant: ask.tenant.clone(),
            requester: ask.requester.clone(),
            requester_name: ask.requester_name.to_owned(),
            approver: match kind {
                "manager" => Approver::Manager,
                _ => Approver::Group(reference.clone()),
            },
            manager,
            approver_name,
            reason: ask.reason.to_owned(),
            created_at: ask.now,
            expires_at: ask.now.saturating_add(ttl),
            status: Status::Pending,
            answered_by: None,
            answered_at: None,
            checked: Vec::new(),
        };
        self.db
            .run(|c| {
                c.prepare_cached(
                    "INSERT INTO approval_requests (id, tenant, requester, requester_name, \
                     approver_kind, approver_ref, approver_name, reason, created_at, expires_at, \
                     status, checked) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', '[]')",
                )?
                .execute(params![
                    request.id,
                    request.tenant.as_str(),
                    request.requester.as_str(),
                    request.requester_name,
                    kind,
                    reference,
                    request.approver_name,
                    request.reason,
                    request.created_at,
                    request.expires_at
                ])
            })
            .await?;
        let mut body = record(&request, "asked");
        body["decision_id"] = json!(ask.decision_id);
        body["reason"] = json!(request.reason);
        audit.append(ask.tenant, Kind::Approval, body).await?;
        Ok(request)
    }

    /// The request with this id, in any state.
    pub async fn get(&self, id: &str) -> Result<Option<ApprovalRequest>, ApprovalError> {
        let row: Option<Row> = self
            .db
            .run(|c| {
                c.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM approval_requests WHERE id = $1"
                ))?
                .query_row([id], read_row)
                .optional()
            })
            .await?;
        row.map(parse).transpose()
    }

    /// Records the answer, if `answer.answered_by` is the approver (see the
    /// module documentation), the request is pending and not expired.
    /// Refusals are recorded too, and change nothing.
    pub async fn answer(
        &self,
        audit: &AuditLog,
        graph: &GraphClient,
        answer: &Answer<'_>,
    ) -> Result<ApprovalRequest, ApprovalError> {
        let Answer {
            tenant,
            id,
            answered_by,
            approve,
            now,
        } = *answer;
        let request = self
            .get(id)
            .await?
            .filter(|r| &r.tenant == tenant)
            .ok_or_else(|| ApprovalError::Unknown(id.chars().take(80).collect()))?;
        if request.status != Status::Pending {
            return Err(ApprovalError::Closed(request.status));
        }
        if request.expires_at < now {
            self.close(audit, &request, Status::Expired, now).await?;
            return Err(ApprovalError::Expired);
        }
        let refusal = if answered_by == &request.requester {
            Some("nobody approves their own request")
        } else {
            match &request.approver {
                Approver::Manager => (request.manager.as_ref() != Some(answered_by))
                    .then_some("only the requester's manager may answer"),
                Approver::Group(group) => (!is_member(graph, answered_by, group).await?)
                    .then_some("only a member of the approver group may answer"),
            }
        };
        if let Some(why) = refusal {
            let mut body = record(&request, "not-approver");
            body["stage"] = json!("approval");
            body["who"] = json!(answered_by);
            body["why"] = json!(why);
            audit.append(tenant, Kind::Refusal, body).await?;
            return Err(ApprovalError::NotApprover {
                who: answered_by.clone(),
                why,
            });
        }
        let status = if approve {
            Status::Approved
        } else {
            Status::Denied
        };
        let updated = self
            .db
            .run(|c| {
                c.prepare_cached(
                    "UPDATE approval_requests SET status = $1, answered_by = $2, answered_at = $3 \
                     WHERE id = $4 AND status = 'pending'",
                )?
                .execute(params![
                    status.as_str(),
                    answered_by.as_str(),
                    now,
                    request.id
                ])
            })
            .await?;
        if updated != 1 {
            let now_status = self.get(id).await?.map_or(Status::Withdrawn, |r| r.status);
            return Err(ApprovalError::Closed(now_status));
        }
        let answered = ApprovalRequest {
            status,
            answered_by: Some(answered_by.clone()),
            answered_at: Some(now),
            ..request
        };
        let mut body = record(&answered, status.as_str());
        body["approver_id"] = json!(answered_by);
        audit.append(tenant, Kind::Approval, body).await?;
        Ok(answered)
    }

    /// Withdraws a pending request (the requester cancelled); `None` when it
    /// was no longer pending.
    pub async fn withdraw(
        &self,
        audit: &AuditLog,
        id: &str,
        now: i64,
    ) -> Result<Option<ApprovalRequest>, ApprovalError> {
        let Some(request) = self.get(id).await? else {
            return Ok(None);
        };
        if request.status != Status::Pending {
            return Ok(None);
        }
        self.close(audit, &request, Status::Withdrawn, now).await
    }

    /// Closes every pending request past its expiry, recording each.
    pub async fn expire_due(
        &self,
        audit: &AuditLog,
        now: i64,
    ) -> Result<Vec<ApprovalRequest>, ApprovalError> {
        let rows: Vec<Row> = self
            .db
            .run(|c| {
                c.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM approval_requests \
                     WHERE status = 'pending' AND expires_at < $1"
                ))?
                .query_map([now], read_row)?
                .collect()
            })
            .await?;
        let mut expired = Vec::new();
        for row in rows {
            let request = parse(row)?;
            if let Some(closed) = self.close(audit, &request, Status::Expired, now).await? {
                expired.push(closed);
            }
        }
        Ok(expired)
    }

    /// Pending group requests of `tenant` that `user` has not been checked
    /// for and that are not their own: the caller checks membership, shows
    /// those that apply and marks each checked.
    pub async fn undelivered_group_requests(
        &self,
        tenant: &TenantId,
        user: &UserId,
        now: i64,
    ) -> Result<Vec<ApprovalRequest>, ApprovalError> {
        let rows: Vec<Row> = self
            .db
            .run(|c| {
                c.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM approval_requests WHERE tenant = $1 \
                     AND status = 'pending' AND approver_kind = 'group' AND requester <> $2 \
                     AND expires_at >= $3 ORDER BY created_at"
                ))?
                .query_map(params![tenant.as_str(), user.as_str(), now], read_row)?
                .collect()
            })
            .await?;
        let mut requests = Vec::new();
        for row in rows {
            let request = parse(row)?;
            if !request.checked.contains(user) {
                requests.push(request);
            }
        }
        Ok(requests)
    }

    /// Remembers that `user` has been checked for request `id` (and shown
    /// it if a member).
    pub async fn mark_checked(&self, id: &str, user: &UserId) -> Result<(), ApprovalError> {
        let Some(mut request) = self.get(id).await? else {
            return Ok(());
        };
        if request.checked.contains(user) {
            return Ok(());
        }
        request.checked.push(user.clone());
        let checked =
            serde_json::to_string(&request.checked).map_err(|_| ApprovalError::Corrupt {
                id: id.to_owned(),
                field: "checked",
            })?;
        self.db
            .run(|c| {
                c.prepare_cached("UPDATE approval_requests SET checked = $1 WHERE id = $2")?
                    .execute([checked.as_str(), id])
            })
            .await?;
        Ok(())
    }

    async fn close(
        &self,
        audit: &AuditLog,
        request: &ApprovalRequest,
        status: Status,
        now: i64,
    ) -> Result<Option<ApprovalRequest>, ApprovalError> {
        let updated = self
            .db
            .run(|c| {
                c.prepare_cached(
                    "UPDATE approval_requests SET status = $1, answered_at = $2 \
                     WHERE id = $3 AND status = 'pending'",
                )?
                .execute(params![status.as_str(), now, request.id])
            })
            .await?;
        if updated != 1 {
            return Ok(None);
        }
        let closed = ApprovalRequest {
            status,
            answered_at: Some(now),
            ..request.clone()
        };
        audit
            .append(
                &request.tenant,
                Kind::Approval,
                record(&closed, status.as_str()),
            )
            .await?;
        Ok(Some(closed))
    }
}

/// The group's display name, or a description of it when Graph cannot say.
async fn group_name(graph: &GraphClient, group: &str) -> String {
    let path = format!(
        "/groups/{}?$select=displayName",
        crate::graph::encode_path_segment(group)
    );
    match graph.get(&path).await {
        Ok(response) => match response.body["displayName"].as_str() {
            Some(name) => format!("the members of {name}"),
            None => format!("the members of group {group}"),
        },
        Err(e) => {
            tracing::debug!(group, error = %e, "the approver group's name could not be read");
            format!("the members of group {group}")
        }
    }
}

/// An approval entry's body.
fn record(request: &ApprovalRequest, event: &str) -> Value {
    json!({
        "event": event,
        "request_id": request.id,
        "requester": request.requester,
        "approver": approver_record(&request.approver, request.manager.as_ref()),
        "expires_at": request.expires_at,
    })
}

fn approver_record(approver: &Approver, manager: Option<&UserId>) -> Value {
    match approver {
        Approver::Manager => json!({"manager": manager}),
        Approver::Group(group) => json!({"group": group}),
    }
}

/// A row of [`COLUMNS`], as stored.
fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
        r.get(11)?,
        r.get(12)?,
        r.get(13)?,
    ))
}

fn parse(row: Row) -> Result<ApprovalRequest, ApprovalError> {
    let (
        id,
        tenant,
        requester,
        requester_name,
        kind,
        reference,
        approver_name,
        reason,
        created_at,
        expires_at,
        status,
        answered_by,
        answered_at,
        checked,
    ) = row;
    let corrupt = |field| ApprovalError::Corrupt {
        id: id.clone(),
        field,
    };
    let tenant = tenant.parse().map_err(|_| corrupt("tenant"))?;
    let requester = requester.parse().map_err(|_| corrupt("requester"))?;
    let (approver, manager) = match kind.as_str() {
        "manager" => (
            Approver::Manager,
            Some(reference.parse().map_err(|_| corrupt("approver_ref"))?),
        ),
        "group" => (Approver::Group(reference), None),
        _ => return Err(corrupt("approver_kind")),
    };
    let status = Status::parse(&status).ok_or_else(|| corrupt("status"))?;
    let answered_by = answered_by
        .map(|a| a.parse())
        .transpose()
        .map_err(|_| corrupt("answered_by"))?;
    let checked: Vec<UserId> = serde_json::from_str(&checked).map_err(|_| corrupt("checked"))?;
    Ok(ApprovalRequest {
        id,
        tenant,
        requester,
        requester_name,
        approver,
        manager,
        approver_name,
        reason,
        created_at,
        expires_at,
        status,
        answered_by,
        answered_at,
        checked,
    })
}
