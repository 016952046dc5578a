//! JSON case corpora: facts in, expected decision out.
//!
//! The same corpus file is checked natively against a policy's Rust code (in the
//! policy crate's own tests) and against the compiled module by
//! `latchkey policy test`, so both must agree.
//!
//! ```json
//! {
//!   "base": { "tenant_id": "…", "requester": { "id": "…" } },
//!   "cases": [
//!     {
//!       "name": "forgot password, MFA passed: reset",
//!       "facts": { "scenario": "forgot-password",
//!                  "verifications": [{ "method": "mfa-step-up", "verified_at": 1795427900 }],
//!                  "requested_actions": ["reset-password"] },
//!       "expect": { "decision": "allow", "actions": ["reset-password"] }
//!     }
//!   ]
//! }
//! ```
//!
//! Each case's `facts` is a JSON merge patch (RFC 7396) applied to `base`, so a
//! case states only what makes it different. In `expect`, `decision` is
//! required; `actions` (compared as a set), `constraints`, `requirements`,
//! `approver` and `reason_contains` are checked when present.

use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use std::fmt;

use serde::Deserialize;

use crate::{Action, AnyOf, Approver, Constraints, Decision, Facts};

/// A parsed corpus, each case's facts already merged onto the base.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// The cases, in file order.
    pub cases: Vec<Case>,
}

/// One case: a name, the facts, and what the decision must be.
#[derive(Debug, Clone)]
pub struct Case {
    /// A short description, printed by test runners.
    pub name: String,
    /// The facts given to the policy.
    pub facts: Facts,
    /// What the decision must match.
    pub expect: Expectation,
}

/// What a decision must match. Absent fields are not checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// `allow`, `deny`, `require-verification`, `require-approval` or `escalate`.
    pub decision: String,
    /// For an allow: exactly these actions, in any order.
    #[serde(default)]
    pub actions: Option<Vec<Action>>,
    /// For an allow: exactly these constraints.
    #[serde(default)]
    pub constraints: Option<Constraints>,
    /// For require-verification: exactly these requirements.
    #[serde(default)]
    pub requirements: Option<Vec<AnyOf>>,
    /// For require-approval: this approver.
    #[serde(default)]
    pub approver: Option<Approver>,
    /// The reason contains this text (case-insensitive).
    #[serde(default)]
    pub reason_contains: Option<String>,
}

/// Why a corpus file could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum CorpusError {
    /// The file is not JSON of the corpus shape.
    Json(serde_json::Error),
    /// A case's merged facts do not form valid facts.
    Case {
        /// The case's name (or its index when unnamed).
        name: String,
        /// What was wrong.
        source: serde_json::Error,
    },
    /// The corpus has no cases.
    Empty,
}

impl fmt::Display for CorpusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorpusError::Json(e) => write!(f, "not a valid case corpus: {e}"),
            CorpusError::Case { name, source } => {
                write!(f, "case {name:?} has invalid facts: {source}")
            }
            CorpusError::Empty => write!(f, "the corpus has no cases"),
        }
    }
}

impl std::error::Error for CorpusError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCorpus {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    base: Option<serde_json::Value>,
    cases: Vec<RawCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    #[serde(default)]
    facts: Option<serde_json::Value>,
    expect: Expectation,
}

impl Corpus {
    /// Parses a corpus from JSON text.
    pub fn from_json(text: &str) -> Result<Corpus, CorpusError> {
        let raw: RawCorpus = serde_json::from_str(text).map_err(CorpusError::Json)?;
        let _ = raw.description;
        if raw.cases.is_empty() {
            return Err(CorpusError::Empty);
        }
        let base = raw
            .base
            .unwrap_or_else(|| serde_json::Value::Object(serde_json::Map::new()));
        let mut cases = Vec::with_capacity(raw.cases.len());
        for case in raw.cases {
            let mut merged = base.clone();
            if let Some(patch) = &case.facts {
                json_patch::merge(&mut merged, patch);
            }
            let facts: Facts =
                serde_json::from_value(merged).map_err(|source| CorpusError::Case {
                    name: case.name.clone(),
                    source,
                })?;
            cases.push(Case {
                name: case.name,
                facts,
                expect: case.expect,
            });
        }
        Ok(Corpus { cases })
    }

    /// Runs every case through `decide` and panics with a report of every
    /// failing case. For a policy crate's own `cargo test`.
    #[allow(clippy::panic)]
    pub fn assert_passes(&self, mut decide: impl FnMut(&Facts) -> Decision) {
        let failures: Vec<String> = self
            .cases
            .iter()
            .filter_map(|case| {
                case.expect
                    .check(&decide(&case.facts))
                    .err()
                    .map(|why| format!("{}: {why}", case.name))
            })
            .collect();
        if !failures.is_empty() {
            panic!(
                "{} of {} cases failed:\n{}",
                failures.len(),
                self.cases.len(),
                failures.join("\n")
            );
        }
    }
}

impl Expectation {
    /// `Ok` when `decision` matches; otherwise what differs, in one line.
    pub fn check(&self, decision: &Decision) -> Result<(), String> {
        if decision.kind() != self.decision {
            return Err(format!(
                "expected {}, got {} ({:?})",
                self.decision,
                decision.kind(),
                decision.reason()
            ));
        }
        match decision {
            Decision::Allow {
                actions,
                constraints,
                ..
            } => {
                if let Some(want) = &self.actions {
                    let want: BTreeSet<_> = want.iter().collect();
                    let got: BTreeSet<_> = actions.iter().collect();
                    if want != got {
                        return Err(format!("expected actions {want:?}, got {got:?}"));
                    }
                }
                if let Some(want) = &self.constraints
                    && want != constraints
                {
                    return Err(format!(
                        "expected constraints {want:?}, got {constraints:?}"
                    ));
                }
            }
            Decision::RequireVerification { requirements, .. } => {
                if let Some(want) = &self.requirements
                    && want != requirements
                {
                    return Err(format!(
                        "expected requirements {want:?}, got {requirements:?}"
                    ));
                }
            }
            Decision::RequireApproval { approver, .. } => {
                if let Some(want) = &self.approver
                    && want != approver
                {
                    return Err(format!("expected approver {want:?}, got {approver:?}"));
                }
            }
            Decision::Deny { .. } | Decision::Escalate { .. } => {}
        }
        if let Some(want) = &self.reason_contains
            && !decision
                .reason()
                .to_lowercase()
                .contains(&want.to_lowercase())
        {
            return Err(format!(
                "expected the reason to mention {want:?}, got {:?}",
                decision.reason()
            ));
        }
        Ok(())
    }
}
