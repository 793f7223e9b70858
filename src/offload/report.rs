//! Pipeline report: per table, the share of flows that could be offloaded and what blocks the
//! rest (filled in below).
