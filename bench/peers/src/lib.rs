//! Latchkey's default policy (`policies/default`) expressed in the two
//! engines people would pick instead, Cedar ([`cedar`]) and Rego for
//! regorus ([`rego`]), so that the three can be checked equivalent on the
//! default policy's corpus and benchmarked side by side on the same facts
//! (`cargo bench --bench side_by_side` in bench/peers).
//!
//! Each engine's answer is reduced to an [`Outcome`]: the kind, the allowed
//! actions and their limits, the verification alternatives, the approver.
//! Reasons are free text and are not compared. The facts' own clock
//! (`time.unix_seconds`) is the only clock any of them reads.

pub mod cedar;
mod outcome;
pub mod rego;

pub use cedar::{CedarInput, CedarPolicy};
pub use outcome::Outcome;
pub use rego::{RegoPolicy, RegoProgram};

/// Why a peer engine could not give an outcome.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// Cedar refused the policy or the request, or a policy failed.
    #[error("cedar: {0}")]
    Cedar(String),
    /// regorus refused the policy or the input, or gave no decision.
    #[error("rego: {0}")]
    Rego(String),
    /// The policies fired for two different outcomes at once.
    #[error("ambiguous outcome: {0}")]
    Ambiguous(String),
    /// The default policy or its corpus could not be read or built.
    #[error("{0}")]
    Setup(String),
}

/// The repository root.
pub fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds `policies/default` with `latchkey policy build` (into
/// `target/test-modules`, beside the outer build's lock) and returns the module.
pub fn default_module() -> Result<Vec<u8>, PeerError> {
    let root = root();
    let built = latchkey::policy::build::build(
        &root.join("policies/default"),
        &latchkey::policy::build::BuildOptions {
            target_dir: Some(root.join("target/test-modules")),
            quiet: true,
        },
    )
    .map_err(|e| PeerError::Setup(format!("building the default policy: {e}")))?;
    std::fs::read(&built.path)
        .map_err(|e| PeerError::Setup(format!("{}: {e}", built.path.display())))
}

/// The default policy's case corpus, `policies/default/cases.json`.
pub fn default_corpus() -> Result<latchkey_policy::corpus::Corpus, PeerError> {
    let path = root().join("policies/default/cases.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| PeerError::Setup(format!("{}: {e}", path.display())))?;
    latchkey_policy::corpus::Corpus::from_json(&text).map_err(|e| PeerError::Setup(e.to_string()))
}
