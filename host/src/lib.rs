//! Latchkey resolves "I can't log in" for Microsoft 365 users end to end,
//! under each tenant's own policy module, compiled to WebAssembly and run in a
//! sandbox with no capabilities.
//!
//! Modules, in the order a request flows through them (see DESIGN.md):
//!
//! * [`policy`]: module identity, publisher trust, the sandbox, the registry
//!   of each tenant's active module, and reproducible builds.
//! * [`config`]: the validated configuration.
//! * [`keys`]: ed25519 keys and key ids.
//! * [`tenant`]: tenant identity.
//! * [`sim`]: the Entra ID and Microsoft Graph emulator (`latchkey sim`), which
//!   the rest never imports: they meet over HTTP only.
//! * [`cli`]: the `latchkey` command.

pub mod cli;
pub mod config;
pub mod keys;
pub mod policy;
#[cfg(feature = "sim")]
pub mod sim;
pub mod tenant;

#[doc(no_inline)]
pub use latchkey_policy as sdk;
