//! Key material in the data directory, generated on first start and reused after.
//!
//! `keys/keyring.json` holds the AES-256-GCM key ring (with key ids, for rotation) and
//! `keys/pepper.key` the pepper of keyed hashes. Both are created with mode 0600 inside a 0700
//! directory, written to a temporary file and linked into place so a crash or a concurrent first
//! start never leaves a half-written key.

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use tessera_core::crypto::{KEY_BYTES, KeyRing, Pepper, SealingKey};

#[derive(Serialize, Deserialize)]
struct KeyRingFile {
    primary: u32,
    keys: Vec<KeyEntry>,
}

#[derive(Serialize, Deserialize)]
struct KeyEntry {
    id: u32,
    key: String,
}

/// The instance's keys.
#[derive(Debug, Clone)]
pub struct InstanceKeys {
    /// Seals factor secrets.
    pub ring: KeyRing,
    /// Keys hashes of codes and CSRF tokens.
    pub pepper: Pepper,
}

fn keys_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("keys")
}

fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", dir.display()))?;
    Ok(())
}

/// Writes `contents` to `path` with mode 0600 unless the file exists; returns whether it wrote.
fn write_new_private_file(path: &Path, contents: &[u8]) -> anyhow::Result<bool> {
    let dir = path.parent().context("key path has no directory")?;
    let temp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("key"),
        std::process::id()
    ));
    {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .with_context(|| format!("cannot write {}", temp.display()))?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    let linked = fs::hard_link(&temp, path);
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(error) => Err(error).with_context(|| format!("cannot create {}", path.display())),
    }
}

fn check_private(path: &Path) -> anyhow::Result<()> {
    let mode = fs::metadata(path)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "{} is readable by other users (mode {mode:o}); run `chmod 600` on it",
            path.display()
        );
    }
    Ok(())
}

fn decode_key(text: &str, what: &str) -> anyhow::Result<[u8; KEY_BYTES]> {
    let bytes = STANDARD
        .decode(text.trim())
        .with_context(|| format!("{what} is not base64"))?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("{what} is not {KEY_BYTES} bytes"))
}

fn encode_ring(ring: &KeyRing) -> anyhow::Result<Vec<u8>> {
    let file = KeyRingFile {
        primary: ring.primary_id(),
        keys: ring
            .keys()
            .iter()
            .map(|k| KeyEntry {
                id: k.id(),
                key: STANDARD.encode(k.expose_bytes()),
            })
            .collect(),
    };
    Ok(serde_json::to_vec_pretty(&file)?)
}

fn read_ring(path: &Path) -> anyhow::Result<KeyRing> {
    check_private(path)?;
    let file: KeyRingFile = serde_json::from_slice(&fs::read(path)?)
        .with_context(|| format!("{} is not a key ring", path.display()))?;
    let keys = file
        .keys
        .iter()
        .map(|entry| {
            Ok(SealingKey::new(
                entry.id,
                decode_key(&entry.key, &format!("key {}", entry.id))?,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    KeyRing::new(file.primary, keys).map_err(|e| anyhow::anyhow!("{e:?}"))
}

fn read_pepper(path: &Path) -> anyhow::Result<Pepper> {
    check_private(path)?;
    Ok(Pepper::new(decode_key(
        &fs::read_to_string(path)?,
        "the pepper",
    )?))
}

/// Loads the keys from `data_dir`, generating any that do not exist yet. Returns the keys and
/// whether anything was generated.
pub fn load_or_generate(data_dir: &Path) -> anyhow::Result<(InstanceKeys, bool)> {
    let dir = keys_dir(data_dir);
    ensure_private_dir(&dir)?;
    let ring_path = dir.join("keyring.json");
    let pepper_path = dir.join("pepper.key");
    let mut generated = false;
    if !ring_path.exists() {
        let ring = KeyRing::generate().map_err(|e| anyhow::anyhow!("{e}"))?;
        generated |= write_new_private_file(&ring_path, &encode_ring(&ring)?)?;
    }
    if !pepper_path.exists() {
        let pepper = Pepper::generate().map_err(|e| anyhow::anyhow!("{e}"))?;
        generated |= write_new_private_file(
            &pepper_path,
            STANDARD.encode(pepper.expose_bytes()).as_bytes(),
        )?;
    }
    let keys = InstanceKeys {
        ring: read_ring(&ring_path)?,
        pepper: read_pepper(&pepper_path)?,
    };
    Ok((keys, generated))
}

/// The key ring file of a data directory, read again when a running server meets a key it
/// does not know (after `tessera keys rotate`).
#[derive(Debug, Clone)]
pub struct KeysDirectory {
    ring_path: std::path::PathBuf,
}

impl KeysDirectory {
    /// The keys of `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            ring_path: keys_dir(data_dir).join("keyring.json"),
        }
    }
}

impl tessera_core::service::KeyRingSource for KeysDirectory {
    fn load(&self) -> tessera_core::Result<KeyRing> {
        read_ring(&self.ring_path).map_err(|error| {
            tessera_core::Error::Internal(format!("cannot read the key ring: {error:#}"))
        })
    }
}

/// Adds a new primary key to the ring in `data_dir` (`tessera keys rotate`); old keys stay to
/// open what they sealed. Returns the new key id.
pub fn rotate(data_dir: &Path) -> anyhow::Result<u32> {
    let (mut keys, _) = load_or_generate(data_dir)?;
    let id = keys.ring.rotate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let path = keys_dir(data_dir).join("keyring.json");
    let next = keys_dir(data_dir).join(format!(".keyring.json.rotate-{}", std::process::id()));
    let _ = fs::remove_file(&next);
    write_new_private_file(&next, &encode_ring(&keys.ring)?)?;
    fs::rename(&next, &path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_generates_private_keys_and_restart_reuses_them() {
        let dir = tempfile::tempdir().unwrap();
        let (first, generated) = load_or_generate(dir.path()).unwrap();
        assert!(generated);
        for file in ["keyring.json", "pepper.key"] {
            let mode = fs::metadata(dir.path().join("keys").join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
        let (second, generated) = load_or_generate(dir.path()).unwrap();
        assert!(!generated);
        assert_eq!(first.pepper.expose_bytes(), second.pepper.expose_bytes());
        let sealed = first.ring.seal(b"x", b"aad").unwrap();
        assert_eq!(second.ring.open(&sealed, b"aad").unwrap(), b"x");
    }

    #[test]
    fn rotation_adds_a_primary_key_and_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let (before, _) = load_or_generate(dir.path()).unwrap();
        let sealed = before.ring.seal(b"x", b"aad").unwrap();
        assert_eq!(rotate(dir.path()).unwrap(), 2);
        let (after, _) = load_or_generate(dir.path()).unwrap();
        assert_eq!(after.ring.primary_id(), 2);
        assert_eq!(after.ring.open(&sealed, b"aad").unwrap(), b"x");
    }

    #[test]
    fn world_readable_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        load_or_generate(dir.path()).unwrap();
        let pepper = dir.path().join("keys").join("pepper.key");
        fs::set_permissions(&pepper, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_or_generate(dir.path()).is_err());
    }
}
