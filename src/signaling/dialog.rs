//! Dialogs (RFC 3261 §12). TODO(helper: core): implement.
