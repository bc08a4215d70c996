//! Decoding a member-list page ([`MemberPage`]): the poll path's largest cost after
//! the network. Pages come in one shape (objects of short strings without escapes),
//! which a strict scanner reads several times faster than serde's generic map access.
//! The scanner gives up, and serde decodes the page, at anything it is not sure of: an
//! escape or control character in a string, a field listed twice, a missing
//! `member_id`, a value of another type, nesting deeper than [`MAX_DEPTH`]. So whatever
//! the scanner returns is what serde returns (a property test holds them to it), and
//! every error message is serde's.

use std::borrow::Cow;

use super::model::{MemberPage, MemberRef, PageInfoRef};
use super::transport::decode_json;

/// Nesting of an ignored value (an unknown field's object or array) the scanner reads;
/// deeper, serde does (with its own limit).
const MAX_DEPTH: usize = 16;

/// Decodes a member-list page, borrowing its strings from `body`.
pub fn decode(body: &[u8]) -> Result<MemberPage<'_>, String> {
    match std::str::from_utf8(body).ok().and_then(scan) {
        Some(page) => Ok(page),
        None => decode_json(body),
    }
}

/// The page, or `None` where serde must decide.
fn scan(text: &str) -> Option<MemberPage<'_>> {
    let mut s = Scanner { text, at: 0 };
    let mut members = None;
    let mut page_info = None;
    s.object(|s, key| match key {
        "members" if members.is_none() => s.members().map(|m| members = Some(m)),
        "page_info" if page_info.is_none() => s.page_info().map(|p| page_info = Some(p)),
        "members" | "page_info" => None,
        _ => s.skip_value(0),
    })?;
    s.ws();
    (s.at == text.len()).then_some(())?;
    Some(MemberPage {
        members: members?,
        page_info: page_info.flatten(),
    })
}

struct Scanner<'a> {
    text: &'a str,
    /// Byte offset of the next unread byte.
    at: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }

    /// The next byte after whitespace, consumed.
    fn next(&mut self) -> Option<u8> {
        self.ws();
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn eat(&mut self, expected: u8) -> Option<()> {
        (self.next()? == expected).then_some(())
    }

    /// Whether `word` comes next (after whitespace), consumed if so.
    fn word(&mut self, word: &str) -> bool {
        self.ws();
        // Bytes, not `str`: a `str` slice panics off a character boundary, and nothing
        // in a page may make the scanner panic.
        let found = self.text.as_bytes()[self.at..].starts_with(word.as_bytes());
        if found {
            self.at += word.len();
        }
        found
    }

    /// A string without escapes or control characters, borrowed.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let end = start + plain_len(&self.text.as_bytes()[start..])?;
        self.at = end + 1;
        // The quote is ASCII, so both ends are character boundaries.
        self.text.get(start..end)
    }

    /// `null` or a string.
    fn optional_string(&mut self) -> Option<Option<Cow<'a, str>>> {
        if self.word("null") {
            return Some(None);
        }
        self.string().map(|v| Some(Cow::Borrowed(v)))
    }

    /// An object: `field` is called with each key, after its colon, and reads the value.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.word("}") {
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            field(self, key)?;
            match self.next()? {
                b',' => {}
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    /// An array: `element` reads each element.
    fn array(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        if self.word("]") {
            return Some(());
        }
        loop {
            element(self)?;
            match self.next()? {
                b',' => {}
                b']' => return Some(()),
                _ => return None,
            }
        }
    }

    fn members(&mut self) -> Option<Vec<MemberRef<'a>>> {
        let mut members = Vec::new();
        self.array(|s| s.member().map(|m| members.push(m)))?;
        Some(members)
    }

    fn member(&mut self) -> Option<MemberRef<'a>> {
        let mut id = None;
        let mut fields: [Option<Option<Cow<'a, str>>>; 5] = Default::default();
        self.object(|s, key| {
            let slot = match key {
                "member_id" if id.is_none() => return s.string().map(|v| id = Some(v)),
                "member_id" => return None,
                "member_type" => &mut fields[0],
                "status" => &mut fields[1],
                "created_at" => &mut fields[2],
                "updated_at" => &mut fields[3],
                "urn" => &mut fields[4],
                _ => return s.skip_value(0),
            };
            // Listed twice: serde's error.
            slot.is_none().then_some(())?;
            *slot = Some(s.optional_string()?);
            Some(())
        })?;
        let [member_type, status, created_at, updated_at, urn] = fields.map(Option::flatten);
        Some(MemberRef {
            member_id: Cow::Borrowed(id?),
            member_type,
            status,
            created_at,
            updated_at,
            urn,
        })
    }

    /// `null`, or an object of which only `next_marker` is read.
    fn page_info(&mut self) -> Option<Option<PageInfoRef<'a>>> {
        if self.word("null") {
            return Some(None);
        }
        let mut marker = None;
        self.object(|s, key| match key {
            "next_marker" if marker.is_none() => s.optional_string().map(|m| marker = Some(m)),
            "next_marker" => None,
            _ => s.skip_value(0),
        })?;
        Some(Some(PageInfoRef {
            next_marker: marker.flatten(),
        }))
    }

    /// Any value, ignored (an unknown field's).
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        (depth < MAX_DEPTH).then_some(())?;
        self.ws();
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.object(|s, _| s.skip_value(depth + 1)),
            b'[' => self.array(|s| s.skip_value(depth + 1)),
            b'-' | b'0'..=b'9' => self.number(),
            _ => ["null", "true", "false"]
                .iter()
                .any(|w| self.word(w))
                .then_some(()),
        }
    }

    /// A number as JSON writes one: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Option<()> {
        let b = self.text.as_bytes();
        let digits = |i: &mut usize| {
            let start = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i > start
        };
        let mut i = self.at + usize::from(b.get(self.at) == Some(&b'-'));
        match b.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => {
                digits(&mut i);
            }
            _ => return None,
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i).then_some(())?;
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            i += usize::from(matches!(b.get(i), Some(b'+' | b'-')));
            digits(&mut i).then_some(())?;
        }
        self.at = i;
        Some(())
    }
}

/// Bytes before the closing quote of a string without escapes or control characters
/// (`None` for any other). Sixteen bytes at a time where the CPU has SSE2 (every
/// x86_64 does), then eight at a time as serde_json does: a page is mostly strings.
fn plain_len(rest: &[u8]) -> Option<usize> {
    let mut at = 0;
    #[cfg(target_arch = "x86_64")]
    while let Some(chunk) = rest[at..].first_chunk::<16>() {
        if let Some(n) = sse2::special(chunk) {
            at += n;
            return (rest[at] == b'"').then_some(at);
        }
        at += 16;
    }
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    // The high bit of each byte that is `b`; a false one only above a true one.
    let equal = |w: u64, b: u8| {
        let x = w ^ (ONES * u64::from(b));
        x.wrapping_sub(ONES) & !x
    };
    while let Some(chunk) = rest[at..].first_chunk::<8>() {
        let w = u64::from_le_bytes(*chunk);
        let below_space = w.wrapping_sub(ONES * 0x20) & !w;
        let special = (equal(w, b'"') | equal(w, b'\\') | below_space) & HIGH;
        if special != 0 {
            at += special.trailing_zeros() as usize / 8;
            return (rest[at] == b'"').then_some(at);
        }
        at += 8;
    }
    let tail = &rest[at..];
    let n = tail
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    (tail[n] == b'"').then_some(at + n)
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };

    /// Where the first quote, backslash or control byte of `chunk` is.
    pub(super) fn special(chunk: &[u8; 16]) -> Option<usize> {
        // SAFETY: SSE2 is part of x86_64 (no CPU check needed); the load reads the 16
        // bytes of `chunk`, unaligned.
        let mask = unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr().cast());
            // min(v, 0x1f) == v exactly where v <= 0x1f (unsigned).
            let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
            let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
            let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
            _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control))
        };
        (mask != 0).then(|| mask.trailing_zeros() as usize)
    }
}

#[cfg(test)]
mod tests;
