//! The investigator: gathers what Graph knows about a verified requester and
//! classifies the situation, producing the policy contract's facts record.
