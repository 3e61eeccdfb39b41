//! Secrets on the node that receives them: password hashing (argon2id), tokens drawn from the
//! OS's random source, and their parsing. Only hashes go into the replicated state.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use porch_core::access::AccessRefusal;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Longest password accepted (argon2 takes any length; this bounds the work per request).
pub const PASSWORD_BYTES_MAX: usize = 1024;
/// Longest `X-Authentication` value looked at; longer is invalid without further work.
pub const TOKEN_BYTES_MAX: usize = 256;

fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| format!("the OS random source failed: {e}"))?;
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(&random_bytes::<16>()?)
        .map_err(|e| format!("cannot encode a salt: {e}"))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Whether `password` matches the stored hash. A malformed hash matches nothing.
pub fn verify_password(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(hash) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash no password matches, verified when the login is unknown so that an unknown login
/// and a wrong password take the same time.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("porch decoy password").unwrap_or_default())
}

/// A token as handed to its user once: `<id>.<secret>`. The id is public (audit entries name
/// it); the secret is kept only as its SHA-256.
pub struct NewToken {
    pub id: String,
    pub text: String,
    pub secret_sha256: [u8; 32],
}

pub fn new_token() -> Result<NewToken, String> {
    let id = hex(&random_bytes::<12>()?);
    let secret = hex(&random_bytes::<32>()?);
    let secret_sha256 = Sha256::digest(secret.as_bytes()).into();
    Ok(NewToken {
        text: format!("{id}.{secret}"),
        id,
        secret_sha256,
    })
}

/// A presented token split into its id and the hash of its secret.
pub struct PresentedToken {
    pub id: String,
    pub secret_sha256: [u8; 32],
}

pub fn parse_token(text: &str) -> Result<PresentedToken, AccessRefusal> {
    let text = text.trim();
    if text.is_empty() || text.len() > TOKEN_BYTES_MAX {
        return Err(AccessRefusal::InvalidToken);
    }
    let (id, secret) = text.split_once('.').ok_or(AccessRefusal::InvalidToken)?;
    let well_formed = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !well_formed(id) || !well_formed(secret) {
        return Err(AccessRefusal::InvalidToken);
    }
    Ok(PresentedToken {
        id: id.to_string(),
        secret_sha256: Sha256::digest(secret.as_bytes()).into(),
    })
}

pub fn secret_matches(stored: &[u8; 32], presented: &[u8; 32]) -> bool {
    stored.ct_eq(presented).into()
}

pub fn new_user_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A password for the bootstrap admin: 24 characters from a 62-letter alphabet (~142 bits).
pub fn random_password() -> Result<String, String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let bytes = random_bytes::<64>()?;
    // Rejection sampling keeps the letters uniform (248 = 4 x 62).
    let password: String = bytes
        .iter()
        .filter(|&&b| b < 248)
        .take(24)
        .map(|&b| ALPHABET[(b % 62) as usize] as char)
        .collect();
    if password.len() < 24 {
        return Err("the OS random source gave too few usable bytes".into());
    }
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_hash_only() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
        assert!(!verify_password("porch decoy password!", decoy_hash()));
    }

    #[test]
    fn a_token_parses_back_to_its_id_and_secret_hash() {
        let token = new_token().unwrap();
        let presented = parse_token(&token.text).unwrap();
        assert_eq!(presented.id, token.id);
        assert!(secret_matches(
            &token.secret_sha256,
            &presented.secret_sha256
        ));
        let other = new_token().unwrap();
        assert!(!secret_matches(&token.secret_sha256, &other.secret_sha256));
    }

    #[test]
    fn garbage_and_oversized_tokens_are_invalid() {
        for bad in [
            "",
            "abc",
            "zz.yy",
            ".",
            "abc.",
            ".abc",
            &"a.".repeat(200),
            "ab.cd\u{0}",
        ] {
            assert!(parse_token(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bootstrap_passwords_are_long_and_differ() {
        let (a, b) = (random_password().unwrap(), random_password().unwrap());
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
    }
}
