//! Tenant policy modules: identity, trust, the sandbox that runs them, and the
//! registry that says which module decides for which tenant.
//!
//! The flow for one module: bytes -> [`ModuleHash`] -> pinned hash and
//! publisher signature checked ([`registry`]) -> compiled or taken from the
//! cache, imports checked ([`Sandbox::load`]) -> one fresh instance per
//! decision ([`Sandbox::decide`]).

mod bindings;
pub mod build;
mod cache;
mod evaluation;
mod module;
pub mod registry;
mod sandbox;
pub mod trust;

pub use cache::{DiskCache, LoadSource, archived_module};
pub use evaluation::{Blame, Evaluation, Fault, MAX_REASON_BYTES, TAP_LIFETIME_MINUTES};
pub use module::{ModuleHash, ParseModuleHashError};
pub use registry::{Applied, OpenError, PolicyRegistry, Refusal, TenantPolicy};
pub use sandbox::{Limits, LoadedModule, Sandbox, SandboxError, WarmInstance};

/// Why the sandbox refused to load a module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// Larger than the sandbox accepts.
    #[error("the module is {bytes} bytes, more than the {limit}-byte limit")]
    TooLarge {
        /// The module's size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// Not a valid WebAssembly component.
    #[error("not a valid WebAssembly component: {0}")]
    InvalidComponent(String),
    /// Imports something outside the contract.
    #[error(
        "the module imports {}, outside the policy contract; a policy may import nothing \
         but latchkey:policy/types@0.1.0 (build it with the latchkey-policy SDK, no_std)",
        .0.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
    )]
    ForbiddenImports(Vec<String>),
    /// Does not export the contract's `evaluate` with the right type.
    #[error("the module does not implement the latchkey:policy@0.1.0 world: {0}")]
    WrongExports(String),
}
