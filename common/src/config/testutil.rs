//! Helpers for the configuration tests: scratch directories and short
//! ways to parse text.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{parse_str, Config};

/// A directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("iscsi-conf-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `name` with `mode` and returns its path.
    pub(crate) fn write(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = self.0.join(name);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn ok(text: &str) -> Config {
    match parse_str(text, "t.conf") {
        Ok(c) => c,
        Err(e) => panic!("unexpected errors: {e:#?}"),
    }
}

/// The errors of a config that must fail, as printed.
pub(crate) fn errs(text: &str) -> Vec<String> {
    match parse_str(text, "t.conf") {
        Ok(c) => panic!("parsed but should not: {c:#?}"),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

/// A minimal valid target block around `body`.
pub(crate) fn target(body: &str) -> String {
    format!(
        "target t {{\n targetaddr 10.0.0.2\n targetname iqn.2001-04.com.example:t\n{body}\n}}\n"
    )
}
