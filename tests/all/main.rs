//! Latchkey's integration tests: one binary, one module per topic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod admin;
mod cache;
mod conversation;
mod executor;
mod graph_client;
mod hostile;
mod investigator;
mod policies;
mod registry;
mod reproducible;
mod resolution;
mod sim_batch;
mod sim_graph;
mod sim_identity;
mod sim_methods;
mod slack;
mod teams;
mod verification;
mod web;
