//! A member ID kept as bytes: project and account IDs are 32 lowercase hex digits, which
//! a record holds as their 16 bytes ([`super::MemberRecord`]) and writes out as text
//! when asked. A leaf.

use arrayvec::ArrayString;

/// A member ID as text: written out from its bytes, or borrowed from the record.
#[derive(Clone, Copy)]
pub enum MemberIdText<'a> {
    Hex(ArrayString<32>),
    Kept(&'a str),
}

impl std::ops::Deref for MemberIdText<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            MemberIdText::Hex(text) => text,
            MemberIdText::Kept(text) => text,
        }
    }
}

impl std::fmt::Display for MemberIdText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

impl std::fmt::Debug for MemberIdText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl<T: AsRef<str> + ?Sized> PartialEq<T> for MemberIdText<'_> {
    fn eq(&self, other: &T) -> bool {
        **self == *other.as_ref()
    }
}

/// Each byte's value as a lowercase hex digit, or 0xFF.
static HEX_VALUE: [u8; 256] = {
    let mut table = [0xFF; 256];
    let mut i = 0;
    while i < 16 {
        table[b"0123456789abcdef"[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// The 16 bytes of an ID of 32 lowercase hex digits; `None` for any other ID.
/// Without a branch a digit: every listed member's ID goes through here.
pub(super) fn hex_bytes(id: &str) -> Option<[u8; 16]> {
    let text: &[u8; 32] = id.as_bytes().try_into().ok()?;
    let mut bytes = [0u8; 16];
    let mut invalid = 0u8;
    for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
        let (high, low) = (
            HEX_VALUE[usize::from(pair[0])],
            HEX_VALUE[usize::from(pair[1])],
        );
        invalid |= high | low;
        *byte = high << 4 | (low & 15);
    }
    (invalid & 0x80 == 0).then_some(bytes)
}

/// Each byte as two lowercase hex digits.
static HEX_PAIR: [[u8; 2]; 256] = {
    let digits = b"0123456789abcdef";
    let mut table = [[0; 2]; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = [digits[i >> 4], digits[i & 15]];
        i += 1;
    }
    table
};

/// `bytes` as 32 lowercase hex digits: a scrape writes every member's ID four times (the
/// `hex` crate's encoder, a nibble at a time, made `render_200x50` 5 % slower).
pub(super) fn hex_text(bytes: &[u8; 16]) -> ArrayString<32> {
    let mut text = [0u8; 32];
    for (pair, b) in text.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIR[usize::from(*b)]);
    }
    // ASCII, so always UTF-8.
    ArrayString::from_byte_string(&text).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_is_written_and_read_back_and_only_lowercase_hex_is_read() {
        for b in 0..=255u8 {
            let bytes = [b; 16];
            let text = hex_text(&bytes);
            assert_eq!(&*text, format!("{b:02x}").repeat(16));
            assert_eq!(hex_bytes(&text), Some(bytes));
        }
        for id in [
            "A".repeat(32),
            "g".repeat(32),
            "0".repeat(31),
            "0".repeat(33),
        ] {
            assert_eq!(hex_bytes(&id), None, "{id}");
        }
    }
}
