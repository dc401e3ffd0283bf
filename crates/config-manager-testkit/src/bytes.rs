//! Bytes: arbitrary ones, and damaged copies of a valid file or message
//! (bits flipped, bytes replaced, inserted or deleted, the end cut off),
//! which reach deeper into a parser than random noise.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

/// Up to `max_len` arbitrary bytes.
pub fn any_bytes(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=max_len)
}

/// One change to a byte string.
#[derive(Debug, Clone)]
pub enum Damage {
    FlipBit(Index, u8),
    Replace(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
}

/// Up to `max` damages.
pub fn damages(max: usize) -> impl Strategy<Value = Vec<Damage>> {
    vec(
        prop_oneof![
            3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Damage::FlipBit(i, b)),
            2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Damage::Replace(i, b)),
            1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Damage::Insert(i, b)),
            1 => any::<Index>().prop_map(Damage::Delete),
            1 => any::<Index>().prop_map(Damage::Truncate),
        ],
        1..=max,
    )
}

/// `base` with `damages` applied in order (indexes scale to the current
/// length, so every damage lands inside the bytes).
pub fn damage(base: &[u8], damages: &[Damage]) -> Vec<u8> {
    let mut out = base.to_vec();
    for d in damages {
        let len = out.len();
        match d {
            Damage::FlipBit(i, bit) if len > 0 => out[i.index(len)] ^= 1 << bit,
            Damage::Replace(i, b) if len > 0 => out[i.index(len)] = *b,
            Damage::Insert(i, b) => out.insert(i.index(len + 1), *b),
            Damage::Delete(i) if len > 0 => {
                out.remove(i.index(len));
            }
            Damage::Truncate(i) => out.truncate(i.index(len + 1)),
            _ => {}
        }
    }
    out
}

/// Damaged copies of `base` (1 to `max` damages each).
pub fn damaged(base: Vec<u8>, max: usize) -> impl Strategy<Value = Vec<u8>> {
    damages(max).prop_map(move |d| damage(&base, &d))
}
