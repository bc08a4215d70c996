//! Splitting the images among replicas: rendezvous (highest-random-weight) hashing of
//! (project ID, image ID), so that every replica agrees without talking to the others
//! and changing the replica count moves only about 1/N of the images.

use std::fmt;

use sha2::{Digest, Sha256};

/// This replica's place: `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Validates `--shard.index` against `--shard.count`. The index may also be given
    /// as a StatefulSet pod name (`ims-exporter-2`), whose ordinal is taken.
    pub fn new(index: &str, count: u32) -> Result<Shard, String> {
        if count == 0 {
            return Err("--shard.count must be at least 1".into());
        }
        let digits = index.trim().rsplit('-').next().unwrap_or("");
        let index: u32 = digits.parse().map_err(|_| {
            format!("--shard.index (or SHARD_INDEX) must be a number or end in -N, got {index:?}")
        })?;
        if index >= count {
            return Err(format!(
                "--shard.index {index} must be below --shard.count {count}"
            ));
        }
        Ok(Shard { index, count })
    }

    /// Whether this replica polls the image.
    pub fn owns(&self, project_id: &str, image_id: &str) -> bool {
        self.count <= 1 || owner(project_id, image_id, self.count) == self.index
    }
}

/// The replica (of `count`) with the highest weight for the image. The weights are
/// SHA-256 based so that every build and platform agrees.
pub fn owner(project_id: &str, image_id: &str, count: u32) -> u32 {
    (0..count.max(1))
        .max_by_key(|replica| {
            let digest = Sha256::new()
                .chain_update(project_id.as_bytes())
                .chain_update(b"/")
                .chain_update(image_id.as_bytes())
                .chain_update(b"/")
                .chain_update(replica.to_be_bytes())
                .finalize();
            let mut first = [0u8; 8];
            first.copy_from_slice(&digest[..8]);
            (u64::from_be_bytes(first), *replica)
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(i: usize) -> String {
        format!("{i:08x}-0000-4000-8000-000000000000")
    }

    #[test]
    fn every_image_has_exactly_one_owner_and_shares_are_even() {
        let counts = (0..3000).fold([0usize; 3], |mut acc, i| {
            let owners: Vec<u32> = (0..3)
                .filter(|&r| Shard { index: r, count: 3 }.owns("p", &image(i)))
                .collect();
            assert_eq!(owners.len(), 1);
            acc[owners[0] as usize] += 1;
            acc
        });
        for c in counts {
            assert!((800..=1200).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn growing_by_one_replica_moves_about_a_quarter() {
        let moved = (0..3000)
            .filter(|i| owner("p", &image(*i), 3) != owner("p", &image(*i), 4))
            .count();
        // Ideal: 1/4 of the images move, all of them to the new replica.
        assert!((600..=900).contains(&moved), "{moved}");
        assert!((0..3000).all(|i| {
            let (a, b) = (owner("p", &image(i), 3), owner("p", &image(i), 4));
            a == b || b == 3
        }));
    }

    #[test]
    fn index_parsing() {
        assert_eq!(Shard::new("2", 3), Ok(Shard { index: 2, count: 3 }));
        assert_eq!(
            Shard::new("ims-exporter-1", 3),
            Ok(Shard { index: 1, count: 3 })
        );
        assert!(Shard::new("3", 3).is_err());
        assert!(Shard::new("x", 3).is_err());
        assert!(Shard::new("0", 0).is_err());
    }
}
