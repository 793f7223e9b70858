//! The flows shardflow owns on a bridge. For now: the packet-in dispatch that sends both
//! directions of a connection to the same shard's controller connection, and the cookie scheme
//! that says which part of shardflow owns a flow. The full default pipeline (tables 0-15, conntrack,
//! learned return flows) builds on these.

pub mod audit;
pub mod cookie;
pub mod default;
pub mod dispatch;
pub mod meters;
pub mod node;
pub mod resync;

/// docs/pipeline.md's example `[pipeline]` section, for the tests of this layer (read without
/// `config`, which sits above the pipeline).
#[cfg(test)]
pub(crate) fn doc_example() -> default::PipelineConfig {
    #[derive(serde::Deserialize)]
    struct Doc {
        pipeline: default::PipelineConfig,
    }
    let doc = include_str!("../../docs/pipeline.md");
    let start = doc.find("```toml\n").map(|i| i + 8).unwrap_or_default();
    let end = doc[start..].find("```").map_or(doc.len(), |i| i + start);
    match toml::from_str::<Doc>(&doc[start..end]) {
        Ok(d) => d.pipeline,
        Err(e) => panic!("docs/pipeline.md's example: {e}"),
    }
}
