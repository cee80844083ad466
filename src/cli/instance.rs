//! The RFC 5626 instance-id of this installation, persisted so that a restart registers as the
//! same device (`+sip.instance`).

use std::path::PathBuf;

fn state_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("WAKELINE_STATE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME") {
        return Some(PathBuf::from(d).join("wakeline"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state/wakeline"))
}

/// `urn:uuid:...`, read from the state folder or created there. If the folder cannot be written,
/// a fresh id is used for this run (and a warning says so).
pub fn instance_id() -> String {
    let fresh = || format!("urn:uuid:{}", uuid::Uuid::new_v4());
    let Some(dir) = state_dir() else {
        tracing::warn!("no state folder (HOME unset): instance-id not persisted");
        return fresh();
    };
    let path = dir.join("instance-id");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let text = text.trim();
        if let Some(u) = text.strip_prefix("urn:uuid:") {
            if uuid::Uuid::parse_str(u).is_ok() {
                return text.to_string();
            }
        }
        tracing::warn!("{}: not an urn:uuid, replacing it", path.display());
    }
    let id = fresh();
    let written = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, &id));
    if let Err(e) = written {
        tracing::warn!("{}: {e}; instance-id not persisted", path.display());
    }
    id
}
