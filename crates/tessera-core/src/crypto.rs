//! Key material and the primitives built on it.
//!
//! - [`KeyRing`]: AES-256-GCM keys with ids, for sealing factor secrets at rest. A sealed value
//!   records the key id, so keys can be rotated; the associated data binds a ciphertext to its
//!   owner and purpose, so a sealed secret copied to another row does not open.
//! - [`Pepper`]: the instance key for keyed hashes (HMAC-SHA256) of backup and one-time codes
//!   and for deriving CSRF tokens.
//! - Session tokens: 256 random bits, only their SHA-256 is stored.
//!
//! No type here prints its secret in `Debug`.

use crate::{Error, Result};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of AES-256 keys, peppers and session tokens, in bytes.
pub const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 12;

/// Fills a fresh array from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|error| Error::Internal(format!("no randomness: {error}")))?;
    Ok(bytes)
}

/// One AES-256-GCM key and its id.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SealingKey {
    #[zeroize(skip)]
    id: u32,
    bytes: [u8; KEY_BYTES],
}

impl SealingKey {
    /// Wraps existing key bytes.
    pub fn new(id: u32, bytes: [u8; KEY_BYTES]) -> Self {
        Self { id, bytes }
    }

    /// A new random key.
    pub fn generate(id: u32) -> Result<Self> {
        Ok(Self::new(id, random_bytes()?))
    }

    /// The key id recorded in sealed values.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The raw key, for writing the key file.
    pub fn expose_bytes(&self) -> &[u8; KEY_BYTES] {
        &self.bytes
    }
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealingKey {{ id: {}, bytes: [REDACTED] }}", self.id)
    }
}

/// The AES-256-GCM keys of the instance. New values are sealed with the primary key; any key
/// in the ring opens what it sealed.
#[derive(Clone, Debug)]
pub struct KeyRing {
    primary: u32,
    keys: Vec<SealingKey>,
}

impl KeyRing {
    /// A ring whose primary key is `primary`, which must be among `keys`.
    pub fn new(primary: u32, keys: Vec<SealingKey>) -> Result<Self> {
        if !keys.iter().any(|key| key.id == primary) {
            return Err(Error::Internal(format!(
                "key ring: primary key {primary} is missing"
            )));
        }
        Ok(Self { primary, keys })
    }

    /// A ring with one new random key, id 1.
    pub fn generate() -> Result<Self> {
        Self::new(1, vec![SealingKey::generate(1)?])
    }

    /// Adds a new random key and makes it primary; earlier keys still open old values.
    pub fn rotate(&mut self) -> Result<u32> {
        let id = self.keys.iter().map(SealingKey::id).max().unwrap_or(0) + 1;
        self.keys.push(SealingKey::generate(id)?);
        self.primary = id;
        Ok(id)
    }

    /// The id of the key new values are sealed with.
    pub fn primary_id(&self) -> u32 {
        self.primary
    }

    /// Every key, for writing the key file.
    pub fn keys(&self) -> &[SealingKey] {
        &self.keys
    }

    fn key(&self, id: u32) -> Option<&SealingKey> {
        self.keys.iter().find(|key| key.id == id)
    }

    /// Seals `plaintext` for `aad` (e.g. `user:<id>|factor:<id>|totp`). The output is
    /// `key id (4 bytes, big-endian) ‖ nonce (12) ‖ ciphertext and tag`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let key = self
            .key(self.primary)
            .ok_or_else(|| Error::Internal("key ring: primary key missing".into()))?;
        let cipher = Aes256Gcm::new_from_slice(&key.bytes)
            .map_err(|_| Error::Internal("key ring: bad key length".into()))?;
        let nonce_bytes: [u8; NONCE_BYTES] = random_bytes()?;
        let ciphertext = cipher
            .encrypt(
                &Nonce::from(nonce_bytes),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| Error::Internal("key ring: sealing failed".into()))?;
        let mut out = Vec::with_capacity(4 + NONCE_BYTES + ciphertext.len());
        out.extend_from_slice(&key.id.to_be_bytes());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Opens a value made by [`KeyRing::seal`] with the same `aad`. Fails closed: an unknown key
    /// id, a wrong `aad` or any tampering is an error.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let fail = || Error::Internal("key ring: sealed value does not open".into());
        if sealed.len() < 4 + NONCE_BYTES + 16 {
            return Err(fail());
        }
        let (id_bytes, rest) = sealed.split_at(4);
        let (nonce_bytes, ciphertext) = rest.split_at(NONCE_BYTES);
        let id = u32::from_be_bytes(id_bytes.try_into().map_err(|_| fail())?);
        let key = self.key(id).ok_or_else(fail)?;
        let cipher = Aes256Gcm::new_from_slice(&key.bytes).map_err(|_| fail())?;
        let nonce: [u8; NONCE_BYTES] = nonce_bytes.try_into().map_err(|_| fail())?;
        cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| fail())
    }
}

/// The id of the key that sealed `sealed`, if it is long enough to name one.
pub fn sealed_key_id(sealed: &[u8]) -> Option<u32> {
    let bytes: [u8; 4] = sealed.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

/// The instance pepper: the key of every keyed hash Tessera stores.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Pepper([u8; KEY_BYTES]);

impl Pepper {
    /// Wraps existing bytes.
    pub fn new(bytes: [u8; KEY_BYTES]) -> Self {
        Self(bytes)
    }

    /// A new random pepper.
    pub fn generate() -> Result<Self> {
        Ok(Self(random_bytes()?))
    }

    /// The raw bytes, for writing the key file.
    pub fn expose_bytes(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }

    /// A value that identifies this pepper without revealing it, recorded in the database so
    /// instances with different keys refuse to share it.
    pub fn check_value(&self) -> [u8; 32] {
        self.keyed_hash("key-check", b"tessera instance pepper")
    }

    /// HMAC-SHA256 over `purpose ‖ 0x00 ‖ data`; the purpose separates uses of the one key.
    pub fn keyed_hash(&self, purpose: &str, data: &[u8]) -> [u8; 32] {
        // HMAC accepts keys of any length, so this cannot fail; the fallback keeps clippy's
        // no-panic rule without an unreachable branch that could hide a real error.
        let Ok(mut mac) = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&self.0) else {
            return [0u8; 32];
        };
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(data);
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pepper([REDACTED])")
    }
}

/// A bearer secret handed to a client once (a session token). Only its hash is stored.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Token(String);

impl Token {
    /// 256 random bits, base64url without padding (43 characters).
    pub fn generate() -> Result<Self> {
        let bytes: [u8; KEY_BYTES] = random_bytes()?;
        Ok(Self(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Wraps a token a client presented.
    pub fn from_client(value: &str) -> Self {
        Self(value.to_owned())
    }

    /// The token, to hand to the client.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The SHA-256 of the token: what the store keeps and looks up by.
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token([REDACTED])")
    }
}

/// The stored form of a [`Token`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// Compares two byte strings in constant time (for their common length).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The CSRF token of a session: a keyed hash of its token hash, so it needs no storage, any
/// instance can check it, and it cannot be turned back into the session token.
pub fn csrf_token(pepper: &Pepper, session: &TokenHash) -> String {
    URL_SAFE_NO_PAD.encode(pepper.keyed_hash("csrf", &session.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_round_trip_and_bind_the_associated_data() {
        let ring = KeyRing::generate().unwrap();
        let sealed = ring.seal(b"JBSWY3DPEHPK3PXP", b"user:1|totp").unwrap();
        assert_eq!(
            ring.open(&sealed, b"user:1|totp").unwrap(),
            b"JBSWY3DPEHPK3PXP"
        );
        assert!(ring.open(&sealed, b"user:2|totp").is_err());
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(ring.open(&tampered, b"user:1|totp").is_err());
        assert!(ring.open(&sealed[..10], b"user:1|totp").is_err());
    }

    #[test]
    fn rotation_keeps_old_values_readable() {
        let mut ring = KeyRing::generate().unwrap();
        let old = ring.seal(b"secret", b"aad").unwrap();
        assert_eq!(ring.rotate().unwrap(), 2);
        let new = ring.seal(b"secret", b"aad").unwrap();
        assert_eq!(&new[..4], &2u32.to_be_bytes());
        assert_eq!(ring.open(&old, b"aad").unwrap(), b"secret");
        assert_eq!(ring.open(&new, b"aad").unwrap(), b"secret");
    }

    #[test]
    fn keyed_hashes_depend_on_key_and_purpose() {
        let a = Pepper::new([1; 32]);
        let b = Pepper::new([2; 32]);
        assert_ne!(a.keyed_hash("backup", b"x"), b.keyed_hash("backup", b"x"));
        assert_ne!(a.keyed_hash("backup", b"x"), a.keyed_hash("otp", b"x"));
        assert_eq!(a.keyed_hash("backup", b"x"), a.keyed_hash("backup", b"x"));
    }

    #[test]
    fn tokens_are_long_random_and_hash_stably() {
        let t1 = Token::generate().unwrap();
        let t2 = Token::generate().unwrap();
        assert_eq!(t1.expose().len(), 43);
        assert_ne!(t1.expose(), t2.expose());
        assert_eq!(t1.hash(), Token::from_client(t1.expose()).hash());
    }

    #[test]
    fn debug_output_hides_secrets() {
        let key = SealingKey::new(7, [0xAB; 32]);
        let pepper = Pepper::new([0xCD; 32]);
        let token = Token::from_client("super-secret-token-value");
        let printed = format!("{key:?} {pepper:?} {token:?} {:?}", token.hash());
        assert!(!printed.contains("171"), "{printed}");
        assert!(!printed.to_lowercase().contains("abab"), "{printed}");
        assert!(!printed.contains("super-secret"), "{printed}");
        assert!(printed.contains("REDACTED"));
    }
}
