//! Bytes as `0-9 A-Z a-z`, eight bytes to eleven characters.
//!
//! CAS allows only `A-Z a-z 0-9 -` in a cookie value (TKT-01): 63 symbols, one short of
//! base64. Base64url with `_` swapped for something else would need an escape (a
//! data-dependent length, and `-` lost as a separator); whole-value base62 needs big
//! numbers. Fixed blocks need neither: 62^11 > 2^64, so each 8-byte block is one `u64`
//! written as 11 digits (1.375 characters a byte, against 1.333 for base64), and a last
//! short block of k bytes takes the fewest digits that hold 256^k. Those widths differ
//! for every k, so the length of the text alone says how many bytes it holds.
//!
//! Decoding is strict: a digit outside the alphabet, a length no block count gives, or a
//! block whose value does not fit its bytes is refused, so each byte string has exactly
//! one encoding.

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const BLOCK: usize = 8;
const BLOCK_DIGITS: usize = 11;
/// `WIDTH[k]`: the digits of a block of `k` bytes, the least `n` with 62^n ≥ 256^k.
const WIDTH: [usize; BLOCK + 1] = [0, 2, 3, 5, 6, 7, 9, 10, 11];

/// The encoding of `bytes`: `bytes.len() / 8 * 11` characters, plus those of the rest.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(encoded_len(bytes.len()));
    for block in bytes.chunks(BLOCK) {
        let mut value = block.iter().fold(0u64, |n, &b| n << 8 | u64::from(b));
        let mut digits = [0u8; BLOCK_DIGITS];
        let digits = &mut digits[..WIDTH[block.len()]];
        for digit in digits.iter_mut().rev() {
            *digit = ALPHABET[usize::try_from(value % 62).unwrap_or(0)];
            value /= 62;
        }
        out.extend(digits.iter().map(|&d| char::from(d)));
    }
    out
}

/// The bytes `text` encodes, or `None` unless it is exactly what [`encode`] writes.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / BLOCK_DIGITS * BLOCK + BLOCK);
    for block in text.as_bytes().chunks(BLOCK_DIGITS) {
        let len = WIDTH.iter().position(|&w| w == block.len())?;
        // 62^11 exceeds u64, so a full block is summed in u128 and then range-checked.
        let value = block
            .iter()
            .try_fold(0u128, |n, &c| Some(n * 62 + u128::from(digit(c)?)))?;
        if value >> (8 * len) != 0 {
            return None;
        }
        let bytes = value.to_be_bytes();
        out.extend_from_slice(&bytes[bytes.len() - len..]);
    }
    Some(out)
}

/// Characters [`encode`] writes for `len` bytes.
pub fn encoded_len(len: usize) -> usize {
    len / BLOCK * BLOCK_DIGITS + WIDTH[len % BLOCK]
}

fn digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'Z' => Some(c - b'A' + 10),
        b'a'..=b'z' => Some(c - b'a' + 36),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn widths_are_the_least_that_hold_each_block_and_all_differ() {
        for (k, &w) in WIDTH.iter().enumerate() {
            let bits = 8 * u32::try_from(k).unwrap();
            let w = u32::try_from(w).unwrap();
            assert!(62u128.pow(w) >= 1u128 << bits, "{k} bytes fit");
            assert!(
                k == 0 || 62u128.pow(w - 1) < 1u128 << bits,
                "{k} bytes, no fewer"
            );
        }
        assert!(
            WIDTH.windows(2).all(|w| w[0] < w[1]),
            "a length names one block size"
        );
    }

    #[test]
    fn known_values() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(&[0]), "00");
        assert_eq!(encode(&[255]), "47");
        assert_eq!(encode(&[0xff; 8]), "LygHa16AHYF");
        assert_eq!(decode("LygHa16AHYF").unwrap(), [0xff; 8]);
    }

    #[test]
    fn refuses_what_encode_never_writes() {
        assert_eq!(decode("48"), None, "256 does not fit one byte");
        assert_eq!(decode("LygHa16AHYG"), None, "2^64 does not fit eight bytes");
        assert_eq!(decode("zzzzzzzzzzz"), None);
        for len in [1, 4, 8, 12] {
            assert_eq!(decode(&"0".repeat(len)), None, "no block is {len} digits");
        }
        for bad in ["0-", "0_", "0.", "0+", "0/", "0=", "0 ", "é0"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn round_trips_in_the_alphabet(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let text = encode(&bytes);
            prop_assert_eq!(text.len(), encoded_len(bytes.len()));
            prop_assert!(text.bytes().all(|c| ALPHABET.contains(&c)));
            prop_assert_eq!(decode(&text), Some(bytes));
        }
    }
}
