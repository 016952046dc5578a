//! Latchkey resolves "I can't log in" for Microsoft 365 users end to end,
//! under each tenant's own policy module, compiled to WebAssembly and run in a
//! sandbox with no capabilities.
//!
//! Modules, in the order a request flows through them (see DESIGN.md):
//!
//! * [`policy`]: module identity, publisher trust, the sandbox, the registry
//!   of each tenant's active module, and reproducible builds.
//! * [`receipt`]: the host's signature over an allow (a DSSE envelope), and
//!   the checks the executor makes before each write.
//! * [`conversation`]: the conversation engine, one state machine per
//!   user, from "I can't log in" to the resolution; [`approvals`], the
//!   requests a require-approval decision makes.
//! * [`graph`]: the Microsoft Graph client (app-only tokens, retries,
//!   paging, typed errors) that the investigator and the executor call.
//! * [`verification`]: identity verification in code (MFA step-up over
//!   OIDC, recovery email codes, manager confirmation).
//! * [`audit`]: the append-only, hash-chained activity log, its verification
//!   and export.
//! * [`config`]: the validated configuration (`latchkey.toml`).
//! * [`service`]: the running service behind `latchkey serve`, and
//!   [`admin`], its admin API.
//! * [`keys`]: ed25519 keys and key ids.
//! * [`ids`]: GUID-shaped identifiers (users, receipts, decisions).
//! * [`tenant`]: tenant identity.
//! * [`sim`]: the Entra ID and Microsoft Graph emulator (`latchkey sim`), which
//!   the rest never imports: they meet over HTTP only.
//! * [`web`]: the web chat (the demo channel) and its JSON API, and
//!   `latchkey demo`'s assembly of emulator, service and chat.
//! * [`cli`]: the `latchkey` command.

pub mod admin;
pub mod approvals;
pub mod audit;
pub mod cli;
pub mod config;
pub mod conversation;
pub mod executor;
pub mod graph;
pub mod ids;
pub mod investigator;
pub mod jwks;
pub mod keys;
#[cfg(feature = "sim")]
pub mod loadtest;
pub mod outbox;
pub mod policy;
pub mod receipt;
pub mod resolution;
pub mod service;
#[cfg(feature = "sim")]
pub mod sim;
pub mod slack;
pub mod teams;
pub mod tenant;
pub mod upstream;
pub mod verification;
pub mod web;

#[doc(no_inline)]
pub use latchkey_policy as sdk;
