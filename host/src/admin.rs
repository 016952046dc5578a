//! The admin API: tenants and their pinned modules, module reloads, recent
//! audit entries; bearer-token protected, loopback by default.
