//! The OS: control-socket tagging, keep-alive scheduling, suspend and wake (issue 4).
