//! Client passwords: argon2id hashes in PHC string format.
//!
//! `smsmax passwd` prints a hash made by [`hash_password`]; the configuration
//! stores only that hash (see `clients[].password_hash`), and binds are checked
//! with [`verify_password`].

use argon2::{
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Algorithm, Argon2, Params, Version,
};

/// Why a password could not be hashed, or why a string is not an acceptable hash.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Not a PHC string at all (`$alg$v=..$params$salt$hash`).
    #[error("not a PHC hash string ({0})")]
    Malformed(argon2::password_hash::Error),
    /// A PHC string, but for another algorithm.
    #[error("algorithm is `{0}`, expected `argon2id` (make one with `smsmax passwd`)")]
    WrongAlgorithm(String),
    /// An argon2id PHC string whose version or parameters are unusable.
    #[error("invalid argon2id parameters ({0})")]
    BadParams(argon2::password_hash::Error),
    /// The PHC string carries no hash output.
    #[error("the hash output is missing")]
    MissingOutput,
    /// Hashing itself failed.
    #[error("hashing failed: {0}")]
    Hashing(argon2::password_hash::Error),
}

/// Hashes `password` with argon2id (the argon2 crate's default parameters:
/// version 0x13, m=19456 KiB, t=2, p=1) and a fresh random 16-byte salt, and
/// returns the PHC string, e.g. `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(PasswordError::Hashing)?;
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(PasswordError::Hashing)?;
    Ok(hash.to_string())
}

/// Checks that `phc` is an argon2id PHC string with usable parameters and an
/// output, without verifying anything against it.
pub fn check_phc(phc: &str) -> Result<(), PasswordError> {
    parse_argon2id(phc).map(|_| ())
}

fn parse_argon2id(phc: &str) -> Result<PasswordHash<'_>, PasswordError> {
    let hash = PasswordHash::new(phc).map_err(PasswordError::Malformed)?;
    if hash.algorithm != Algorithm::Argon2id.ident() {
        return Err(PasswordError::WrongAlgorithm(hash.algorithm.to_string()));
    }
    if let Some(version) = hash.version {
        Version::try_from(version).map_err(|e| PasswordError::BadParams(argon2::password_hash::Error::from(e)))?;
    }
    Params::try_from(&hash).map_err(PasswordError::BadParams)?;
    if hash.hash.is_none() {
        return Err(PasswordError::MissingOutput);
    }
    Ok(hash)
}

/// True when `password` matches the argon2id PHC string `phc`. A malformed
/// hash, or one for another algorithm, never matches.
///
/// This is deliberately slow (that is the point of argon2): call it from a
/// blocking worker, not from an async task.
pub fn verify_password(phc: &str, password: &[u8]) -> bool {
    match parse_argon2id(phc) {
        Ok(hash) => Argon2::default().verify_password(password, &hash).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let phc = hash_password("demo-pass").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        check_phc(&phc).unwrap();
        assert!(verify_password(&phc, b"demo-pass"));
        assert!(!verify_password(&phc, b"demo-pass "));
        assert!(!verify_password(&phc, b""));
    }

    #[test]
    fn salts_are_fresh() {
        assert_ne!(hash_password("x").unwrap(), hash_password("x").unwrap());
    }

    #[test]
    fn rejects_non_argon2id() {
        assert!(matches!(check_phc("plaintext"), Err(PasswordError::Malformed(_))));
        // A well-formed argon2i hash is refused: the gateway stores argon2id only.
        let argon2i = "$argon2i$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$\
                       aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
        assert!(matches!(
            check_phc(argon2i),
            Err(PasswordError::WrongAlgorithm(a)) if a == "argon2i"
        ));
        assert!(!verify_password(argon2i, b"anything"));
        assert!(matches!(
            check_phc("$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA"),
            Err(PasswordError::MissingOutput)
        ));
        assert!(check_phc(
            "$argon2id$v=19$m=1,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
        )
        .is_err());
    }
}
