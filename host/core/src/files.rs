//! Files the platform writes for itself.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` (replacing it), readable and writable by the
/// owner only: keys, tokens, secrets.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn only_the_owner_may_read() -> std::io::Result<()> {
        let dir = std::env::temp_dir().join(format!("sfop-core-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("secret");
        super::write_private(&path, b"one")?;
        super::write_private(&path, b"two")?;
        assert_eq!(std::fs::read(&path)?, b"two");
        assert_eq!(
            std::fs::metadata(&path)?.permissions().mode() & 0o777,
            0o600
        );
        std::fs::remove_dir_all(&dir)
    }
}
