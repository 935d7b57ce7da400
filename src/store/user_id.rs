//! From the bytes a client sent to the place a user lives: a dense slot or the side table.

use crate::limits::USER_ID_LEN_MAX;

/// Where a user's slot lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserKey<'a> {
    /// A canonical decimal below `--capacity`: an index into the dense slot array.
    Dense(u64),
    /// Anything else (a UUID, a handle, a number with a leading zero): the side table.
    Side(&'a [u8]),
}

/// Why bytes cannot be a user ID (`cmd` words it for the client).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserIdError {
    Empty,
    /// Longer than `USER_ID_LEN_MAX`.
    TooLong,
}

/// Only the canonical spelling of a number is dense (`42`, not `042` or `+42`), so two
/// different strings never share a slot: `042` is another user, kept in the side table.
pub fn parse_user_id(id: &[u8], capacity: u64) -> Result<UserKey<'_>, UserIdError> {
    if id.is_empty() {
        return Err(UserIdError::Empty);
    }
    if id.len() > USER_ID_LEN_MAX {
        return Err(UserIdError::TooLong);
    }
    if let Some(n) = parse_canonical_decimal(id)
        && n < capacity
    {
        return Ok(UserKey::Dense(n));
    }
    Ok(UserKey::Side(id))
}

fn parse_canonical_decimal(id: &[u8]) -> Option<u64> {
    if id.len() > 20 || (id.len() > 1 && id[0] == b'0') {
        return None;
    }
    let mut n: u64 = 0;
    for &d in id {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_small_numbers_are_dense() {
        let cap = 1 << 32;
        assert_eq!(parse_user_id(b"0", cap), Ok(UserKey::Dense(0)));
        assert_eq!(parse_user_id(b"42", cap), Ok(UserKey::Dense(42)));
        assert_eq!(
            parse_user_id(b"4294967295", cap),
            Ok(UserKey::Dense(4294967295))
        );
        for side in [
            &b"4294967296"[..],
            b"042",
            b"+42",
            b"-1",
            b"4 2",
            b"u42",
            b"99999999999999999999999",
        ] {
            assert_eq!(
                parse_user_id(side, cap),
                Ok(UserKey::Side(side)),
                "{side:?}"
            );
        }
        assert_eq!(parse_user_id(b"", cap), Err(UserIdError::Empty));
        assert_eq!(parse_user_id(&[b'a'; 257], cap), Err(UserIdError::TooLong));
        assert!(parse_user_id(&[b'a'; 256], cap).is_ok());
    }
}
