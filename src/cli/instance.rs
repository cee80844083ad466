//! The RFC 5626 instance-id of this installation, persisted so that a restart registers as the
//! same device (`+sip.instance`).
//!
//! One process at a time owns the persisted id: it holds an advisory lock on `instance-id.lock`
//! next to it for as long as it runs (the OS drops the lock when the process ends, even after a
//! crash, so a restart is the same device again). A second process running meanwhile gets a
//! fresh id of its own and says so — two processes registering one account with the same
//! `+sip.instance` and `reg-id` would silently replace each other's binding.

use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn state_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("WAKELINE_STATE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME") {
        return Some(PathBuf::from(d).join("wakeline"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state/wakeline"))
}

fn fresh() -> String {
    format!("urn:uuid:{}", uuid::Uuid::new_v4())
}

/// The lock this process holds on its state folder, once taken (kept until exit).
static HELD: OnceLock<PathBuf> = OnceLock::new();

/// `urn:uuid:...`, read from the state folder or created there. If the folder cannot be written,
/// or another process owns the persisted id, a fresh id is used for this run (and a warning
/// says so).
pub fn instance_id() -> String {
    let Some(dir) = state_dir() else {
        tracing::warn!("no state folder (HOME unset): instance-id not persisted");
        return fresh();
    };
    match lock(&dir, &HELD) {
        Ok(true) => persisted(&dir),
        Ok(false) => {
            tracing::warn!(
                "another wakeline process uses the instance-id in {}: this one registers with a \
                 fresh instance-id of its own (RFC 5626: two devices, two bindings)",
                dir.display()
            );
            fresh()
        }
        Err(e) => {
            tracing::warn!("{}: {e}; instance-id not persisted", dir.display());
            fresh()
        }
    }
}

/// Takes the exclusive advisory lock on `dir/instance-id.lock` for the rest of the process;
/// `Ok(false)` when another process (or another open of the file) holds it.
fn lock(dir: &Path, held: &OnceLock<PathBuf>) -> std::io::Result<bool> {
    if held.get().is_some_and(|d| d == dir) {
        return Ok(true);
    }
    std::fs::create_dir_all(dir)?;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("instance-id.lock"))?;
    // Leaked on purpose: the lock lives as long as the process.
    let lock: &'static mut fd_lock::RwLock<File> = Box::leak(Box::new(fd_lock::RwLock::new(file)));
    match lock.try_write() {
        Ok(guard) => {
            std::mem::forget(guard);
            let _ = held.set(dir.to_path_buf());
            Ok(true)
        }
        Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

/// The id stored in `dir/instance-id`, created if missing or invalid.
fn persisted(dir: &Path) -> String {
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
    if let Err(e) = std::fs::write(&path, &id) {
        tracing::warn!("{}: {e}; instance-id not persisted", path.display());
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_owner_at_a_time_and_the_owner_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let ours = OnceLock::new();
        assert!(lock(dir.path(), &ours).unwrap());
        assert!(lock(dir.path(), &ours).unwrap(), "taken again by its owner");
        // Another owner (as another process would be) is refused while ours holds it.
        let other = OnceLock::new();
        assert!(!lock(dir.path(), &other).unwrap());
        let id = persisted(dir.path());
        assert!(id.starts_with("urn:uuid:"));
        assert_eq!(persisted(dir.path()), id, "the persisted id is stable");
    }
}
