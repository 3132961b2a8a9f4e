//! Zig-zag variable-length integers as used inside Kafka records (protobuf style).

use crate::error::{Error, Result};

/// Longest encoding of a 64-bit varint.
pub const VARLONG_LEN_MAX: usize = 10;

/// Appends `value` zig-zag encoded as a varint (32-bit).
pub fn put_varint(out: &mut Vec<u8>, value: i32) {
    put_unsigned(out, ((value << 1) ^ (value >> 31)) as u32 as u64);
}

/// Appends `value` zig-zag encoded as a varlong (64-bit).
pub fn put_varlong(out: &mut Vec<u8>, value: i64) {
    put_unsigned(out, ((value << 1) ^ (value >> 63)) as u64);
}

fn put_unsigned(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Number of bytes [`put_varint`] writes for `value`.
pub fn varint_len(value: i32) -> usize {
    unsigned_len(((value << 1) ^ (value >> 31)) as u32 as u64)
}

/// Number of bytes [`put_varlong`] writes for `value`.
pub fn varlong_len(value: i64) -> usize {
    unsigned_len(((value << 1) ^ (value >> 63)) as u64)
}

fn unsigned_len(mut value: u64) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}

/// Reads a zig-zag varint from the front of `input`, advancing it.
///
/// # Errors
/// [`Error::Truncated`] when the input ends mid-number, [`Error::BadRecord`] when the
/// number does not fit in 32 bits.
pub fn get_varint(input: &mut &[u8]) -> Result<i32> {
    let raw = get_unsigned(input, 5)?;
    if raw > u32::MAX as u64 {
        return Err(Error::BadRecord(format!("varint {raw} overflows 32 bits")));
    }
    let raw = raw as u32;
    Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// Reads a zig-zag varlong from the front of `input`, advancing it.
///
/// # Errors
/// [`Error::Truncated`] when the input ends mid-number, [`Error::BadRecord`] when the
/// encoding is longer than ten bytes.
pub fn get_varlong(input: &mut &[u8]) -> Result<i64> {
    let raw = get_unsigned(input, VARLONG_LEN_MAX)?;
    Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

fn get_unsigned(input: &mut &[u8], len_max: usize) -> Result<u64> {
    let mut value: u64 = 0;
    for index in 0..len_max {
        let Some(&byte) = input.get(index) else {
            return Err(Error::Truncated {
                needed: index + 1,
                available: input.len(),
            });
        };
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            *input = &input[index + 1..];
            return Ok(value);
        }
    }
    Err(Error::BadRecord(format!(
        "varint longer than {len_max} bytes"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        // Goal: match the zig-zag table of the protobuf/Kafka documentation.
        for (value, bytes) in [
            (0, vec![0u8]),
            (-1, vec![1]),
            (1, vec![2]),
            (-2, vec![3]),
            (63, vec![0x7e]),
            (64, vec![0x80, 0x01]),
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out, bytes, "varint {value}");
            assert_eq!(varint_len(value), bytes.len());
        }
    }

    #[test]
    fn truncated_varint_is_an_error() {
        // Goal: a continuation bit on the last byte is reported, not read past.
        let mut input: &[u8] = &[0x80, 0x80];
        assert!(matches!(
            get_varint(&mut input),
            Err(Error::Truncated { .. })
        ));
    }

    proptest! {
        #[test]
        fn varint_round_trip(value: i32) {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            prop_assert_eq!(out.len(), varint_len(value));
            let mut input = out.as_slice();
            prop_assert_eq!(get_varint(&mut input).unwrap(), value);
            prop_assert!(input.is_empty());
        }

        #[test]
        fn varlong_round_trip(value: i64) {
            let mut out = Vec::new();
            put_varlong(&mut out, value);
            prop_assert_eq!(out.len(), varlong_len(value));
            let mut input = out.as_slice();
            prop_assert_eq!(get_varlong(&mut input).unwrap(), value);
            prop_assert!(input.is_empty());
        }
    }
}
