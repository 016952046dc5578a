//! The executor: the only code that writes to Graph, and only on a valid,
//! unused receipt for the verified requester's own account.
