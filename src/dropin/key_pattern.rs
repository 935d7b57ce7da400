//! `--key-pattern`: the keys that are presence keys and where the user ID sits in them.
//!
//! `user:{id}:presence` (the default) makes `user:42:presence` user 42; `{id}` alone makes
//! every key a presence key whose whole name is the user ID.

const PLACEHOLDER: &str = "{id}";

#[derive(Clone, Debug)]
pub struct KeyPattern {
    text: String,
    prefix: Vec<u8>,
    suffix: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPatternError(pub String);

impl KeyPattern {
    pub fn parse(text: &str) -> Result<KeyPattern, KeyPatternError> {
        let mut parts = text.split(PLACEHOLDER);
        let (Some(prefix), Some(suffix), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(KeyPatternError(format!(
                "--key-pattern must contain {PLACEHOLDER} exactly once, got '{text}'"
            )));
        };
        Ok(KeyPattern {
            text: text.to_string(),
            prefix: prefix.as_bytes().to_vec(),
            suffix: suffix.as_bytes().to_vec(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The user ID inside `key`, if `key` is a presence key.
    pub fn user_id<'a>(&self, key: &'a [u8]) -> Option<&'a [u8]> {
        if key.len() <= self.prefix.len() + self.suffix.len() {
            return None;
        }
        key.strip_prefix(&self.prefix[..])?
            .strip_suffix(&self.suffix[..])
    }

    /// The presence key of `user_id`.
    pub fn key_for(&self, user_id: &[u8]) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.prefix.len() + user_id.len() + self.suffix.len());
        key.extend_from_slice(&self.prefix);
        key.extend_from_slice(user_id);
        key.extend_from_slice(&self.suffix);
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_and_formats_ids() {
        let p = KeyPattern::parse("user:{id}:presence").expect("valid");
        assert_eq!(p.user_id(b"user:42:presence"), Some(&b"42"[..]));
        assert_eq!(p.user_id(b"user::presence"), None);
        assert_eq!(p.user_id(b"user:42:presenc"), None);
        assert_eq!(p.user_id(b"session:42"), None);
        assert_eq!(p.key_for(b"42"), b"user:42:presence");
        let bare = KeyPattern::parse("{id}").expect("valid");
        assert_eq!(bare.user_id(b"anything"), Some(&b"anything"[..]));
        assert_eq!(bare.user_id(b""), None);
        assert!(KeyPattern::parse("user:presence").is_err());
        assert!(KeyPattern::parse("{id}:{id}").is_err());
    }
}
