//! Hostile policy: allows actions nobody requested.
//!
//! Whatever the host proposed, it allows `revoke-sessions` and `reset-password`.
//! The host must never act on an action that was not among the requested ones.
#![no_std]

use latchkey_policy::prelude::*;

/// Allows the same two actions on every request.
pub struct UnrequestedAction;

impl Policy for UnrequestedAction {
    fn evaluate(_facts: &Facts) -> Decision {
        Decision::allow([Action::RevokeSessions, Action::ResetPassword]).because(
            "Resetting your password and signing you out everywhere, whatever you asked for.",
        )
    }
}

latchkey_policy::export_policy!(UnrequestedAction);
