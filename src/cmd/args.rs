//! A cursor over a command's arguments, as mini-redis's `Parse`: handlers take arguments in
//! order and say what they expect, instead of indexing `args[N]`. The dispatcher has checked
//! the arity already, so a missing required argument can only be a bug in the command table;
//! it is still an error reply, never a panic.

use bytes::Bytes;

use super::error::CmdError;

pub struct Args<'a> {
    /// The command's (or subcommand's) table name, for arity errors raised by the handler.
    name: &'static str,
    all: &'a [Bytes],
    at: usize,
}

impl<'a> Args<'a> {
    /// A cursor over `all`, starting at `at` (1 after the command name, 2 after a subcommand).
    pub fn new(name: &'static str, all: &'a [Bytes], at: usize) -> Args<'a> {
        Args {
            name,
            all,
            at: at.min(all.len()),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The whole request as the client sent it, the command's name first (for error texts
    /// that quote what was typed).
    pub fn request(&self) -> &'a [Bytes] {
        self.all
    }

    /// Where the next argument is in the request (0 is the command's name).
    pub fn position(&self) -> usize {
        self.at
    }

    /// The next argument, if any.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<&'a Bytes> {
        let arg = self.all.get(self.at)?;
        self.at += 1;
        Some(arg)
    }

    /// The next argument, which the command's arity guarantees.
    pub fn required(&mut self) -> Result<&'a Bytes, CmdError> {
        self.next().ok_or(CmdError::WrongArity(self.name))
    }

    /// The next argument as an option's value: a syntax error if the option has none.
    pub fn value(&mut self) -> Result<&'a Bytes, CmdError> {
        self.next().ok_or(CmdError::Syntax)
    }

    /// The next argument as a decimal integer, parsed as Redis does.
    pub fn integer(&mut self) -> Result<i64, CmdError> {
        crate::resp::parse_integer(self.required()?).ok_or(CmdError::NotAnInteger)
    }

    pub fn peek(&self) -> Option<&'a Bytes> {
        self.all.get(self.at)
    }

    /// How many arguments are left.
    pub fn remaining(&self) -> usize {
        self.all.len() - self.at
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Every argument left; the cursor ends.
    pub fn rest(&mut self) -> &'a [Bytes] {
        let rest = &self.all[self.at..];
        self.at = self.all.len();
        rest
    }

    /// Nothing may follow: a syntax error if something does.
    pub fn finish(&self) -> Result<(), CmdError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(CmdError::Syntax)
        }
    }

    /// Taking `keyword` if it is next (case-insensitive).
    pub fn eat(&mut self, keyword: &[u8]) -> bool {
        if self.peek().is_some_and(|a| a.eq_ignore_ascii_case(keyword)) {
            self.at += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cursor takes arguments in order and reports what is missing or left over as the
    /// error a client should see.
    #[test]
    fn takes_in_order() {
        let all: Vec<Bytes> = ["set", "k", "v", "EX", "10"]
            .iter()
            .map(|s| Bytes::from(s.as_bytes().to_vec()))
            .collect();
        let mut args = Args::new("set", &all, 1);
        assert_eq!(&args.required().expect("key")[..], b"k");
        assert_eq!(&args.required().expect("value")[..], b"v");
        assert_eq!(args.finish(), Err(CmdError::Syntax));
        assert!(!args.eat(b"px"));
        assert!(args.eat(b"ex"));
        assert_eq!(args.integer(), Ok(10));
        assert_eq!(args.finish(), Ok(()));
        assert_eq!(args.required(), Err(CmdError::WrongArity("set")));
        assert_eq!(args.value(), Err(CmdError::Syntax));
    }
}
