//! The shard's mesh inbox: handoffs from other shards, their answers, and the control thread's
//! requests (REST commands, stats, invalidation, node updates), each sent to its handler.

use super::*;

impl Shard {
    // === inbox ===

    pub(super) async fn serve_inbox(self: Rc<Self>) {
        let inbox = self.shared.mesh.inbox(self.ctx.id);
        while let Ok(msg) = inbox.recv_async().await {
            match msg {
                ShardMsg::Handoff(h) => {
                    self.handoffs_in.set(self.handoffs_in.get() + 1);
                    self.record(h.key, h.key.hash64(), true);
                    let Some(p) = h.packet else { continue };
                    let (from, conn) = (h.from, h.conn);
                    self.decide_then(p, Instant::now(), move |shard, outcome| {
                        let decided = outcome.decided.map(Box::new);
                        let back = ShardMsg::Answer { conn, messages: outcome.messages, decided };
                        if from == shard.ctx.id {
                            shard.on_answer(back);
                        } else {
                            shard.send_to_shard(from, back);
                        }
                    });
                }
                msg @ ShardMsg::Answer { .. } => self.on_answer(msg),
                ShardMsg::Command { dpid, cmd, reply } => {
                    let shard = self.clone();
                    glommio::spawn_local(async move {
                        let r = shard.command(dpid, cmd).await;
                        let _ = reply.send_async(r).await;
                    })
                    .detach();
                }
                ShardMsg::Stats { reply } => {
                    let _ = reply.send_async(self.stats()).await;
                }
                ShardMsg::Invalidate { ips, below_version, all, reply } => {
                    let _ = reply.send_async(self.invalidate(&ips, below_version, all)).await;
                }
                ShardMsg::Node(update) => self.on_node_update(&update),
            }
        }
    }

    pub(super) fn on_answer(&self, msg: ShardMsg) {
        if let ShardMsg::Answer { conn, messages, decided } = msg {
            self.send_on(conn, messages, decided.map(|d| *d));
        }
    }
}
