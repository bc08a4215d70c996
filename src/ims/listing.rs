//! What a member listing's answer was, page by page: enough to know that the next
//! poll got the very same answer without decoding it again. Shares change rarely, so
//! most polls of an image get the bytes they got last time, and decoding, checking,
//! sorting and judging those again was most of a steady poll's CPU.
//!
//! A page is known by a 128-bit XXH3 hash of its bytes, seeded at random per process.
//! It is not a cryptographic hash and need not be one: a server that could choose its
//! bytes to collide could as well send the old bytes themselves.

use std::sync::LazyLock;

use xxhash_rust::xxh3::xxh3_128_with_seed;

/// One page of a listing: its bytes' hash, and the marker of the page after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PagePrint {
    pub(super) hash: u128,
    pub(super) next_marker: Option<String>,
}

/// Every page of one complete, well-formed member listing, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingPrint {
    pub(super) page_size: u32,
    pub(super) pages: Vec<PagePrint>,
    /// The members it listed.
    pub(super) members: usize,
}

impl ListingPrint {
    /// Whether the same answer would pass this poll's paging and caps (a reload may
    /// have changed them): only then may it stand for its members unread.
    pub(super) fn fits(&self, page_size: u32, cap: usize, max_pages: usize) -> bool {
        self.page_size == page_size && self.members <= cap && self.pages.len() <= max_pages
    }
}

/// What listing an image's members found.
#[derive(Debug)]
pub enum Listed<R> {
    /// Another answer than the known one: its members, and its print.
    Changed(Vec<R>, ListingPrint),
    /// Byte for byte the known answer, so the members it stood for.
    Same,
}

pub(super) fn page_hash(body: &[u8]) -> u128 {
    static SEED: LazyLock<u64> = LazyLock::new(rand::random);
    xxh3_128_with_seed(body, *SEED)
}
