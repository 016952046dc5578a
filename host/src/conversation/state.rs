//! A conversation's state between messages: the open case, if any, and what
//! it waits for. Persisted as JSON in the `conversations` table, so a
//! conversation resumes after a restart; it holds no secret (no code, no
//! password, no token: only which verifications were offered and passed).

use latchkey_policy::{Approval, Method, Verification};
use serde::{Deserialize, Serialize};

use crate::investigator::Claim;

/// The state of one conversation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// The request being worked on; `None` when idle.
    pub case: Option<Case>,
}

/// One request, from "I can't log in" to its resolution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// A random id, for traces and the audit notes.
    pub id: String,
    /// What the user said is wrong.
    #[serde(with = "claim")]
    pub claim: Claim,
    /// The account the user named, when they named one.
    pub about: Option<String>,
    /// When it started, Unix seconds.
    pub started_at: i64,
    /// When it ends unless something happens, Unix seconds: the idle
    /// timeout after the user's last message, or the deadline of what it
    /// waits for, whichever is later.
    pub deadline: i64,
    /// Whether what the investigation found has been told.
    pub described: bool,
    /// Verifications passed in this conversation (facts for the policy).
    pub verifications: Vec<Verification>,
    /// Approvals given for this request (facts for the policy).
    pub approvals: Vec<Approval>,
    /// What it waits for.
    pub waiting: Waiting,
}

/// What a case waits for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "for", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Waiting {
    /// Nothing yet (the case is being decided).
    #[default]
    Nothing,
    /// The requester to pass a verification.
    Verification(Offers),
    /// An approver to answer.
    Approval {
        /// The approval request.
        request_id: String,
        /// Who was asked, for reminders.
        approver_name: String,
        /// When the request expires, Unix seconds.
        expires_at: i64,
    },
}

/// The verifications offered, and their state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Offers {
    /// The methods the policy accepts (every requirement's), for reminders.
    pub methods: Vec<Method>,
    /// The MFA step-up link, while it is live.
    pub step_up: Option<StepUpOffer>,
    /// The recovery email code, while one is live.
    pub code: Option<CodeOffer>,
    /// The manager confirmation asked for, while it is open.
    pub manager: Option<ManagerOffer>,
}

impl Offers {
    /// The latest deadline of what is offered, if anything is.
    pub fn latest_deadline(&self) -> Option<i64> {
        [
            self.step_up.as_ref().map(|s| s.expires_at),
            self.code.as_ref().map(|c| c.expires_at),
            self.manager.as_ref().map(|m| m.expires_at),
        ]
        .into_iter()
        .flatten()
        .max()
    }

    /// Forgets the step-up link and code offered by another engine
    /// instance: the verifier's pending sign-ins and codes do not survive a
    /// restart (see `crate::verification`), so they would only fail.
    pub fn drop_other_instances(&mut self, instance: &str) {
        if self
            .step_up
            .as_ref()
            .is_some_and(|s| s.instance != instance)
        {
            self.step_up = None;
        }
        if self.code.as_ref().is_some_and(|c| c.instance != instance) {
            self.code = None;
        }
    }

    /// Forgets offers past their deadline.
    pub fn drop_expired(&mut self, now: i64) {
        if self.step_up.as_ref().is_some_and(|s| s.expires_at <= now) {
            self.step_up = None;
        }
        if self.code.as_ref().is_some_and(|c| c.expires_at <= now) {
            self.code = None;
        }
        if self.manager.as_ref().is_some_and(|m| m.expires_at <= now) {
            self.manager = None;
        }
    }

    /// True when nothing is on offer any more.
    pub fn is_empty(&self) -> bool {
        self.step_up.is_none() && self.code.is_none() && self.manager.is_none()
    }
}

/// An MFA step-up link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepUpOffer {
    /// The authorize URL (its `state` is a single-use nonce, not a secret
    /// on its own: completing it takes the requester's own MFA sign-in).
    pub url: String,
    /// When it stops working, Unix seconds.
    pub expires_at: i64,
    /// The engine instance that started it.
    pub instance: String,
}

/// A recovery email code, sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeOffer {
    /// The masked address it went to.
    pub to: String,
    /// When it stops working, Unix seconds.
    pub expires_at: i64,
    /// The engine instance that sent it.
    pub instance: String,
}

/// A manager confirmation, asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagerOffer {
    /// The confirmation request's id.
    pub request_id: String,
    /// The manager's display name.
    pub name: String,
    /// When it stops being accepted, Unix seconds.
    pub expires_at: i64,
}

/// Claims are stored by their audit-log name.
mod claim {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::investigator::Claim;
    use crate::resolution::claim_name;

    const ALL: [Claim; 5] = [
        Claim::ForgotPassword,
        Claim::LostMfaDevice,
        Claim::LockedOut,
        Claim::PasswordExpired,
        Claim::CannotSignIn,
    ];

    pub fn serialize<S: Serializer>(claim: &Claim, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(claim_name(*claim))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Claim, D::Error> {
        let name = String::deserialize(d)?;
        ALL.into_iter()
            .find(|c| claim_name(*c) == name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown claim {name:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_round_trips_through_json() {
        let state = State {
            case: Some(Case {
                id: "c".into(),
                claim: Claim::LostMfaDevice,
                about: None,
                started_at: 1,
                deadline: 2,
                described: true,
                verifications: vec![Verification {
                    method: Method::MfaStepUp,
                    verified_at: 1,
                }],
                approvals: Vec::new(),
                waiting: Waiting::Verification(Offers {
                    methods: vec![Method::RecoveryEmailCode],
                    code: Some(CodeOffer {
                        to: "a***@example.net".into(),
                        expires_at: 5,
                        instance: "i".into(),
                    }),
                    ..Offers::default()
                }),
            }),
        };
        let text = serde_json::to_string(&state).unwrap();
        assert!(text.contains("\"lost-mfa-device\""), "{text}");
        assert_eq!(serde_json::from_str::<State>(&text).unwrap(), state);
    }
}
