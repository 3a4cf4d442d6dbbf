//! First-start chores: the data directory and the master key.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use keyrail_core::secret::MasterKey;

use crate::config::Config;

pub const MASTER_KEY_FILE: &str = "master.key";

/// Creates the data directory (mode 0700) if it is missing.
pub fn ensure_data_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// The master key: `master_key` from the configuration when set, else the file
/// `master_key_file` when set (read, never created), else `data_dir/master.key`, created
/// (mode 0600) on first start and reused after. Two processes starting at once on a
/// fresh directory end up with the same key: the file is written aside and linked into place
/// only if no other process got there first.
pub fn load_or_create_master_key(config: &Config) -> Result<MasterKey, String> {
    if !config.master_key.is_empty() {
        return MasterKey::from_hex(&config.master_key)
            .ok_or_else(|| "master_key must be 64 hex characters (32 bytes)".to_owned());
    }
    if !config.master_key_file.as_os_str().is_empty() {
        let path = &config.master_key_file;
        return read_key_file(path)?
            .ok_or_else(|| format!("master_key_file {} does not exist", path.display()));
    }
    let path = config.data_dir.join(MASTER_KEY_FILE);
    if let Some(key) = read_key_file(&path)? {
        return Ok(key);
    }
    let key = MasterKey::generate();
    let tmp = config
        .data_dir
        .join(format!(".{MASTER_KEY_FILE}.{}", std::process::id()));
    let write = || -> io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(key.to_hex().as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()
    };
    let _ = fs::remove_file(&tmp);
    write().map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    let linked = fs::hard_link(&tmp, &path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(key),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_key_file(&path)?
            .ok_or_else(|| format!("{} vanished while starting", path.display())),
        Err(e) => Err(format!("cannot create {}: {e}", path.display())),
    }
}

fn read_key_file(path: &Path) -> Result<Option<MasterKey>, String> {
    match fs::read_to_string(path) {
        Ok(text) => {
            if let Ok(meta) = fs::metadata(path)
                && meta.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(
                    path = %path.display(),
                    "the master key file is readable by group or others; chmod 600 it"
                );
            }
            MasterKey::from_hex(&text).map(Some).ok_or_else(|| {
                format!(
                    "{} is not a master key (64 hex characters expected)",
                    path.display()
                )
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_key_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::defaults();
        config.data_dir = dir.path().join("nested/data");
        ensure_data_dir(&config.data_dir).unwrap();
        let mode = fs::metadata(&config.data_dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let a = load_or_create_master_key(&config).unwrap();
        let file = config.data_dir.join(MASTER_KEY_FILE);
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let b = load_or_create_master_key(&config).unwrap();
        assert_eq!(a.bytes(), b.bytes());
    }

    #[test]
    fn configured_key_wins_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::defaults();
        config.data_dir = dir.path().to_owned();
        config.master_key = "ab".repeat(32);
        assert_eq!(
            load_or_create_master_key(&config).unwrap().bytes(),
            &[0xab; 32]
        );
        config.master_key.clear();
        fs::write(dir.path().join(MASTER_KEY_FILE), "not a key").unwrap();
        let e = load_or_create_master_key(&config).unwrap_err();
        assert!(e.contains("master.key"), "{e}");
        assert!(
            !e.contains("not a key"),
            "the file's content must not be echoed: {e}"
        );
    }

    /// A secret store that mounts files: the key is read from `master_key_file`, never created
    /// there, and a missing or bad file stops the start naming the file.
    #[test]
    fn master_key_file_is_read_and_never_created() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::defaults();
        config.data_dir = dir.path().join("data");
        let mounted = dir.path().join("secrets").join("keyrail-master-key");
        config.master_key_file = mounted.clone();

        let e = load_or_create_master_key(&config).unwrap_err();
        assert!(e.contains("keyrail-master-key"), "{e}");
        assert!(!mounted.exists(), "a missing key file is not invented");
        assert!(!config.data_dir.join(MASTER_KEY_FILE).exists());

        fs::create_dir_all(mounted.parent().unwrap()).unwrap();
        fs::write(&mounted, format!("{}\n", "cd".repeat(32))).unwrap();
        assert_eq!(
            load_or_create_master_key(&config).unwrap().bytes(),
            &[0xcd; 32]
        );

        fs::write(&mounted, "garbage").unwrap();
        let e = load_or_create_master_key(&config).unwrap_err();
        assert!(
            e.contains("keyrail-master-key") && !e.contains("garbage"),
            "{e}"
        );

        // Both ways at once is a mistake an operator should hear about.
        config.master_key = "ab".repeat(32);
        let e = config.validate().unwrap_err();
        assert!(e.contains("master_key_file"), "{e}");
    }
}
