//! The bodies of mux's fuzz targets, one per parser of untrusted input, and the seeds
//! each starts from.
//!
//! Shared by the cargo fuzz targets in `fuzz/` (each a one-line wrapper of
//! [`Target::run`]) and by this crate's tests, which run every seed, every kept
//! regression input (`fuzz/regressions/<target>/`) and a few thousand deterministic
//! mutations of the seeds on each `cargo xtask test`. A target's body panics only on a
//! bug: malformed input must come back as an error, never a panic, and what a parser
//! accepts must survive the trip back through its encoder unchanged.
//!
//! Inputs that stand for named fields (a Redis hash, object metadata, a row) use
//! [`fields`]: `name_len:u8 name value_len:u16le value`, repeated.

mod targets;

pub use targets::TARGETS;

/// One fuzz target.
#[derive(Debug)]
pub struct Target {
    /// Its name (the cargo fuzz target and the regression directory).
    pub name: &'static str,
    /// The parser it exercises, for the listing in `cargo xtask fuzz --list`.
    pub what: &'static str,
    /// Runs the input; panics only on a bug.
    pub run: fn(&[u8]),
    /// Valid inputs to start from.
    pub seeds: fn() -> Vec<Vec<u8>>,
}

/// The target named `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// Splits input into named fields (see the crate documentation); a cut-short tail is
/// dropped.
pub fn fields(mut data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some((&name_len, rest)) = data.split_first() {
        let name_len = usize::from(name_len);
        if rest.len() < name_len + 2 {
            break;
        }
        let name = String::from_utf8_lossy(&rest[..name_len]).into_owned();
        let value_len = usize::from(u16::from_le_bytes([rest[name_len], rest[name_len + 1]]));
        let rest = &rest[name_len + 2..];
        let value_len = value_len.min(rest.len());
        out.push((name, rest[..value_len].to_vec()));
        data = &rest[value_len..];
    }
    out
}

/// The input [`fields`] reads back as `pairs` (names and values longer than the format
/// holds are cut).
pub fn encode_fields(pairs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in pairs {
        let name = &name.as_bytes()[..name.len().min(255)];
        let value = &value[..value.len().min(usize::from(u16::MAX))];
        out.push(name.len() as u8);
        out.extend_from_slice(name);
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(value);
    }
    out
}

/// `count` deterministic mutations of `seed` (bit flips, byte changes, cuts, inserts,
/// splices of the seed into itself), from a small PRNG seeded with `salt`: a cheap
/// stand-in for the fuzzer in the normal tests.
pub fn mutations(seed: &[u8], count: usize, salt: u64) -> Vec<Vec<u8>> {
    let mut state = salt ^ 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let mut input = seed.to_vec();
        for _ in 0..1 + next() % 4 {
            let at = |n: u64, len: usize| (n % (len as u64 + 1)) as usize;
            let len = input.len();
            match next() % 6 {
                0 if len > 0 => {
                    let i = at(next(), len - 1);
                    input[i] ^= 1 << (next() % 8);
                }
                1 if len > 0 => {
                    let i = at(next(), len - 1);
                    input[i] = [0, 0xff, b'"', b'\\', b'{', b'%', b'/', b'\n'][next() as usize % 8];
                }
                2 => input.truncate(at(next(), len)),
                3 => {
                    let i = at(next(), len);
                    input.insert(i, next() as u8);
                }
                4 if len > 0 => {
                    let (a, b) = (at(next(), len), at(next(), len));
                    let (from, to) = (a.min(b), a.max(b));
                    let piece = input[from..to].to_vec();
                    let i = at(next(), len);
                    input.splice(i..i, piece);
                }
                _ if len > 0 => {
                    let i = at(next(), len - 1);
                    input.remove(i);
                }
                _ => {}
            }
        }
        out.push(input);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let pairs = vec![
            ("v".to_owned(), b"abc".to_vec()),
            (String::new(), Vec::new()),
            ("val".to_owned(), vec![0, 255, 10]),
        ];
        assert_eq!(fields(&encode_fields(&pairs)), pairs);
        assert!(
            fields(&[3, b'a']).is_empty(),
            "a cut-short field is dropped"
        );
    }

    #[test]
    fn mutations_are_deterministic_and_differ() {
        let a = mutations(b"hello world", 50, 1);
        assert_eq!(a, mutations(b"hello world", 50, 1));
        assert!(a.iter().filter(|m| m.as_slice() != b"hello world").count() > 40);
    }

    #[test]
    fn target_names_are_unique_and_seeded() {
        for (i, t) in TARGETS.iter().enumerate() {
            assert!(TARGETS[..i].iter().all(|o| o.name != t.name), "{}", t.name);
            assert!(!(t.seeds)().is_empty(), "{} has no seeds", t.name);
        }
    }
}
