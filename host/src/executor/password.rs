//! Temporary passwords for a reset: random, from the operating system's
//! CSPRNG, and always within Entra's complexity rules, so that the reset is
//! never refused for the password itself.
//!
//! Entra's rules for a password an administrator sets (graph-api.md 1.7; the
//! emulator's `check_password`): 8 to 256 characters of printable ASCII, at
//! least three of the four classes (lowercase, uppercase, digit, symbol),
//! and none of the user's names or the UPN's local part in it. A generated
//! password has [`PASSWORD_LENGTH`] characters with **all four** classes, and
//! is drawn again if it contains a name.
//!
//! The alphabet leaves out characters that read alike (`l`, `I`, `1`, `O`,
//! `0`) because the user reads the password in a chat and types it, and the
//! symbols that chat clients turn into formatting or quotes (`*`, `_`, `` ` ``,
//! `~`, `"`, `'`, `\`, spaces). That leaves 66 characters: 16 of them are
//! about 96 bits.
//!
//! Every draw is unbiased: a random byte is used only when it is below the
//! largest multiple of the range that fits in a byte (rejection sampling),
//! and the classes' positions are shuffled with Fisher-Yates on such draws.
//! The bytes come from `OsRng::try_fill_bytes`, whose failure is an error;
//! `rand`'s distributions would draw through the infallible `next_u32`,
//! which panics when the OS generator fails.

use crate::graph::Secret;
use crate::ids::{RandomError, random_bytes};

/// The length of a generated password: twice Entra's minimum of 8, and
/// enough that the four fixed classes cost little entropy.
pub const PASSWORD_LENGTH: usize = 16;

const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
const DIGITS: &[u8] = b"23456789";
const SYMBOLS: &[u8] = b"!#$%+-=?@";
const CLASSES: [&[u8]; 4] = [LOWER, UPPER, DIGITS, SYMBOLS];

/// How many passwords are drawn before giving up on avoiding the names. One
/// draw in millions contains a given three-letter name; a hundred failures
/// in a row means the names cannot be avoided (a name of three symbols,
/// say), not bad luck.
const MAX_DRAWS: usize = 100;

/// Entra ignores names this short: they would forbid too much to be a rule.
const MIN_NAME_CHARS: usize = 3;

/// Why no password was generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// The operating system's random number generator failed.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// Every draw contained one of the user's names.
    #[error(
        "no password avoided the user's names in {MAX_DRAWS} draws; check the user's givenName, surname and userPrincipalName"
    )]
    NamesUnavoidable,
}

/// A new password for a user whose names (given name, surname, display
/// name, UPN...) are `names`: [`PASSWORD_LENGTH`] characters, all four
/// classes, none of the names (ignoring case; names shorter than three
/// characters do not count).
pub fn generate(names: &[&str]) -> Result<Secret, PasswordError> {
    let forbidden = forbidden_parts(names);
    generate_until(|candidate| !contains_any(candidate, &forbidden))
}

/// Draws until `acceptable` takes a candidate, at most [`MAX_DRAWS`] times.
fn generate_until(acceptable: impl Fn(&str) -> bool) -> Result<Secret, PasswordError> {
    let mut draw = Draw::new();
    for _ in 0..MAX_DRAWS {
        let candidate = draw.password()?;
        if acceptable(&candidate) {
            return Ok(Secret::new(candidate));
        }
    }
    Err(PasswordError::NamesUnavoidable)
}

/// Whether `password` meets the rules [`generate`] guarantees: the length,
/// every class, only the alphabet's characters, and none of `names`.
pub fn meets_rules(password: &str, names: &[&str]) -> bool {
    let bytes = password.as_bytes();
    bytes.len() == PASSWORD_LENGTH
        && CLASSES
            .iter()
            .all(|class| bytes.iter().any(|b| class.contains(b)))
        && bytes
            .iter()
            .all(|b| CLASSES.iter().any(|class| class.contains(b)))
        && !contains_any(password, &forbidden_parts(names))
}

/// The lowercase strings a password must not contain: each name whole, and
/// each of its parts split at `.`, `_`, `-`, `@` and spaces (a UPN's
/// `adele.vance` gives `adele.vance`, `adele` and `vance`), when at least
/// [`MIN_NAME_CHARS`] long.
fn forbidden_parts(names: &[&str]) -> Vec<String> {
    let mut parts = Vec::new();
    for name in names {
        let name = name.trim().to_lowercase();
        let pieces = name
            .split(['.', '_', '-', '@', ' '])
            .map(str::to_owned)
            .chain(std::iter::once(name.clone()));
        for piece in pieces {
            if piece.chars().count() >= MIN_NAME_CHARS && !parts.contains(&piece) {
                parts.push(piece);
            }
        }
    }
    parts
}

fn contains_any(password: &str, forbidden: &[String]) -> bool {
    let lower = password.to_lowercase();
    forbidden.iter().any(|part| lower.contains(part.as_str()))
}

/// Unbiased draws from a buffer of OS random bytes.
struct Draw {
    buffer: [u8; 64],
    used: usize,
}

impl Draw {
    fn new() -> Draw {
        Draw {
            buffer: [0; 64],
            used: 64,
        }
    }

    fn byte(&mut self) -> Result<u8, RandomError> {
        if self.used == self.buffer.len() {
            self.buffer = random_bytes()?;
            self.used = 0;
        }
        let byte = self.buffer[self.used];
        self.used += 1;
        Ok(byte)
    }

    /// A uniform index below `n` (1 to 256).
    fn below(&mut self, n: usize) -> Result<usize, RandomError> {
        debug_assert!((1..=256).contains(&n));
        // The largest multiple of n that fits in a byte's 256 values: bytes
        // at or above it would make the low indices likelier.
        let limit = 256 - 256 % n;
        loop {
            let byte = usize::from(self.byte()?);
            if byte < limit {
                return Ok(byte % n);
            }
        }
    }

    fn pick(&mut self, alphabet: &[u8]) -> Result<u8, RandomError> {
        Ok(alphabet[self.below(alphabet.len())?])
    }

    /// One candidate: a character of each class, the rest from the whole
    /// alphabet, in shuffled order.
    fn password(&mut self) -> Result<String, RandomError> {
        let all: Vec<u8> = CLASSES.concat();
        let mut chars = Vec::with_capacity(PASSWORD_LENGTH);
        for class in CLASSES {
            chars.push(self.pick(class)?);
        }
        while chars.len() < PASSWORD_LENGTH {
            chars.push(self.pick(&all)?);
        }
        for i in (1..chars.len()).rev() {
            let j = self.below(i + 1)?;
            chars.swap(i, j);
        }
        Ok(chars.into_iter().map(char::from).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn passwords_have_every_class_and_only_the_alphabet() {
        for _ in 0..500 {
            let password = generate(&["Adele", "Vance", "adele.vance@contoso.com"]).unwrap();
            let text = password.expose();
            assert!(
                meets_rules(text, &["Adele", "Vance", "adele.vance@contoso.com"]),
                "{text}"
            );
            assert!(!text.contains(['l', 'I', '1', 'O', '0', '*', '_', ' ']));
        }
        assert_ne!(
            generate(&[]).unwrap().expose(),
            generate(&[]).unwrap().expose()
        );
    }

    #[test]
    fn names_and_their_parts_are_forbidden() {
        let names = ["Adele", "Vance", "adele.vance@contoso.com", "Li"];
        assert!(!meets_rules("aB3!xxxxADELExxx", &names));
        assert!(!meets_rules("aB3!xxxxxvAnCexx", &names));
        assert!(!meets_rules("aB3!xxxxcontosox", &names));
        // Two-letter names are not a rule.
        assert!(meets_rules("aB3!xxxxxxxLixxx", &names));
        assert!(meets_rules("aB3!xxxxxxxxxxxx", &names));
        // A missing class, a foreign character or the wrong length fail.
        assert!(!meets_rules("aB3xxxxxxxxxxxxx", &names));
        assert!(!meets_rules("aB3!xxxxxxxxxxx*", &names));
        assert!(!meets_rules("aB3!xxx", &names));
    }

    #[test]
    fn names_that_cannot_be_avoided_are_reported_not_looped_on() {
        assert_eq!(
            generate_until(|_| false).map(|p| p.is_empty()),
            Err(PasswordError::NamesUnavoidable)
        );
        let drawn = std::cell::Cell::new(0);
        let second = generate_until(|_| {
            drawn.set(drawn.get() + 1);
            drawn.get() == 2
        })
        .unwrap();
        assert_eq!(second.expose().len(), PASSWORD_LENGTH);
        assert_eq!(drawn.get(), 2, "drawn again after a refusal");
    }

    #[test]
    fn draws_are_roughly_uniform() {
        let mut draw = Draw::new();
        let mut counts: HashMap<usize, u32> = HashMap::new();
        let n = 66;
        let rounds = 66_000;
        for _ in 0..rounds {
            *counts.entry(draw.below(n).unwrap()).or_default() += 1;
        }
        assert_eq!(counts.len(), n, "every index is drawn");
        // Expected 1000 each; with rejection sampling no index is favoured.
        // 6 sigma (about 190) keeps this from ever flaking.
        for (index, count) in counts {
            assert!((810..=1190).contains(&count), "{index}: {count}");
        }
    }
}
