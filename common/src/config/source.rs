//! Reading configuration files safely: never block on a FIFO, never read
//! without bound, and remember what identifies the file and who may read it.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::error::FileProblem;

/// Real configurations are a few kilobytes; this only stops `/dev/zero`.
pub(crate) const MAX_FILE_SIZE: u64 = 16 << 20;

pub(crate) struct Loaded {
    pub data: Vec<u8>,
    /// st_mode permission bits, taken from the open descriptor.
    pub mode: u32,
    /// (st_dev, st_ino), to recognise a file already being read.
    pub key: (u64, u64),
}

pub(crate) fn load(path: &Path) -> Result<Loaded, FileProblem> {
    let io = |e: std::io::Error| FileProblem::Io(e.to_string());
    // O_NONBLOCK keeps open(2) from waiting for a writer on a FIFO; it
    // changes nothing for the regular files accepted below.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(FileProblem::NotRegular);
    }
    let mut data = Vec::new();
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut data)
        .map_err(io)?;
    if data.len() as u64 > MAX_FILE_SIZE {
        return Err(FileProblem::TooLarge(MAX_FILE_SIZE));
    }
    Ok(Loaded {
        data,
        mode: meta.mode() & 0o7777,
        key: (meta.dev(), meta.ino()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn loads_a_regular_file_with_mode_and_identity() {
        let dir = std::env::temp_dir().join(format!("iscsi-conf-src-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.conf");
        std::fs::write(&p, b"isid en 1 2\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let l = load(&p).unwrap();
        assert_eq!(l.data, b"isid en 1 2\n");
        assert_eq!(l.mode, 0o640);
        let again = load(&p).unwrap();
        assert_eq!(l.key, again.key);
        assert_eq!(load(&dir).err(), Some(FileProblem::NotRegular));
        assert!(matches!(
            load(&dir.join("missing")).err(),
            Some(FileProblem::Io(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_devices() {
        assert_eq!(
            load(Path::new("/dev/null")).err(),
            Some(FileProblem::NotRegular)
        );
    }
}
