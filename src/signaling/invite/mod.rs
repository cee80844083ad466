//! The invite state machine and the no-INVITE-lost ledger. TODO(helper: core): implement.
