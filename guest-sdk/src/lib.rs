#![doc = include_str!("../README.md")]
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
// The README (these docs) shows a policy crate whole, its unit test included.
#![allow(clippy::test_attr_in_doctest)]

extern crate alloc;
// Lets generated bindings name this crate by the same path inside and outside it.
extern crate self as latchkey_policy;
#[cfg(feature = "corpus")]
extern crate std;

mod decision;
mod facts;

#[cfg(feature = "corpus")]
pub mod corpus;

#[cfg(target_arch = "wasm32")]
mod bindings;
#[cfg(target_arch = "wasm32")]
mod runtime;

pub use decision::{AllowBuilder, AnyOf, Approver, Constraints, Decision, VerifyBuilder};
pub use facts::{
    Action, Approval, AuthMethod, BlockingPolicy, Channel, Clock, Facts, Method, MfaState,
    Requester, Scenario, SignInSignals, Verification, Weekday,
};

/// Re-exports of `alloc`, so a `#![no_std]` policy needs no `extern crate alloc`.
pub use alloc::{format, string::String, string::ToString, vec, vec::Vec};

/// Everything a policy usually needs, in one `use`.
pub mod prelude {
    pub use crate::{
        Action, Approver, AuthMethod, Channel, Constraints, Decision, Facts, Method, Policy,
        Scenario, String, ToString, Vec, Weekday, export_policy, format, vec,
    };
}

/// A tenant policy: a pure function from facts to a decision.
///
/// Implement it on a unit struct and export it with [`export_policy!`]. The same
/// code runs natively under `cargo test` and, compiled to `wasm32-wasip2`, in
/// Latchkey's sandbox.
pub trait Policy {
    /// Decide what to do about one request. Must depend on `facts` only: a
    /// module has no clock, randomness, filesystem or network.
    fn evaluate(facts: &Facts) -> Decision;
}

/// Exports a [`Policy`] as the module's `evaluate` function.
///
/// Use it once, at the crate root of a `cdylib` policy crate. On native targets
/// it expands to nothing, so the policy stays testable with `cargo test`.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __LatchkeyExport;
            impl $crate::__private::Guest for __LatchkeyExport {
                fn evaluate(facts: $crate::__private::RawFacts) -> $crate::__private::RawDecision {
                    $crate::__private::evaluate::<$policy>(facts)
                }
            }
            $crate::__private::raw::__latchkey_export_raw!(__LatchkeyExport with_types_in $crate::__private::raw);
        };
    };
}

/// Not public API: what [`export_policy!`] expands to needs these paths.
#[doc(hidden)]
#[cfg(target_arch = "wasm32")]
pub mod __private {
    pub use crate::bindings::evaluate;
    pub use crate::bindings::raw;
    pub use crate::bindings::raw::Guest;
    pub use crate::bindings::raw::latchkey::policy::types::{
        Decision as RawDecision, Facts as RawFacts,
    };
    pub use wit_bindgen;
}
