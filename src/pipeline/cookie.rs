//! Flow cookies: `generation (16 bits) | category (8 bits) | object id (40 bits)`.
//!
//! Every flow shardflow installs carries one, so that its owner is known from `dump-flows` alone,
//! whole categories can be deleted by cookie mask, and flows of an older generation (a previous
//! daemon run) can be told from current ones during a resync.

/// What part of shardflow a flow belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Category {
    /// Packet-in fan-out to the shards' controller connections.
    Dispatch = 0x01,
    /// The fixed default pipeline.
    Pipeline = 0x02,
    /// Per-connection policy flows (table 3, table 0 for services).
    Connection = 0x03,
    /// Return flows OVS learns in table 6 (`learn()` in table 15): written by the switch, owned
    /// by their idle timeouts, never deleted by a resync.
    Learned = 0x04,
    /// Flows added by hand through the REST API or CLI.
    Manual = 0x0f,
}

pub const GENERATION_SHIFT: u32 = 48;
pub const CATEGORY_SHIFT: u32 = 40;
pub const OBJECT_MASK: u64 = (1 << CATEGORY_SHIFT) - 1;
/// Selects the category bits (with [`CATEGORY_ONLY`] as mask: every flow of one category).
pub const CATEGORY_MASK: u64 = 0xff << CATEGORY_SHIFT;

/// The cookie of a flow of `category` with `object` id (low 40 bits kept) in `generation`.
pub const fn make(generation: u16, category: Category, object: u64) -> u64 {
    ((generation as u64) << GENERATION_SHIFT) | ((category as u64) << CATEGORY_SHIFT) | (object & OBJECT_MASK)
}

/// The category byte of a cookie (`None` for a cookie shardflow did not write).
pub fn category(cookie: u64) -> Option<Category> {
    match ((cookie & CATEGORY_MASK) >> CATEGORY_SHIFT) as u8 {
        0x01 => Some(Category::Dispatch),
        0x02 => Some(Category::Pipeline),
        0x03 => Some(Category::Connection),
        0x04 => Some(Category::Learned),
        0x0f => Some(Category::Manual),
        _ => None,
    }
}

pub const fn generation(cookie: u64) -> u16 {
    (cookie >> GENERATION_SHIFT) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let c = make(7, Category::Connection, 0x12_3456_789a);
        assert_eq!(c, 0x0007_0312_3456_789a);
        assert_eq!(generation(c), 7);
        assert_eq!(category(c), Some(Category::Connection));
        assert_eq!(c & OBJECT_MASK, 0x12_3456_789a);
        assert_eq!(category(0), None);
        // Object ids wider than 40 bits cannot leak into the category.
        assert_eq!(category(make(1, Category::Dispatch, u64::MAX)), Some(Category::Dispatch));
    }
}
