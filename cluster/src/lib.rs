//! reco's many-nodes layer, built from NATS itself: subject-mapping
//! partitions, JetStream key-value leases and heartbeats, and ordered
//! consumers on the event stream. No actix: the node wires it in.
//!
//! ```text
//!  producer ── <prefix>.events.<m> ──┐  server mapping {{partition(N,1)}}
//!  caller ── <prefix>.recommend.<m> ─┤──► <prefix>.p.events.<k>.<m>    ─► event stream
//!                                    └──► <prefix>.p.recommend.<k>.<m> ─► owner of k
//!  leases  (KV, max_age = lease):  p<k> = node   ── create / CAS renew / delete
//!  nodes   (KV, max_age = ttl):    node = heartbeat
//!  owner of k: ordered consumer on <prefix>.p.events.<k>.* from now − window
//!              → replay → serve <prefix>.p.recommend.<k>.* (plain subscription)
//! ```
//!
//! # Layout
//! - [`nats_config`]: the server configuration with the mappings
//!   (`reco nats-config`).
//! - [`roles`]: the users of a deployment by role (node, producer, caller,
//!   operator, trainer) and their permissions (`reco nats-config --roles`).
//! - [`node_id`]: `NodeId`, the name of a node.
//! - [`lease`]: `Leases`, a partition's owner in a key-value bucket.
//! - [`membership`]: `Membership` heartbeats and `LiveNodes`.
//! - [`assignment`]: rendezvous hashing of partitions over live nodes.
//! - [`fence`]: `Fence`, what the request path checks before it answers.
//! - [`rebalancer`]: `Rebalancer`, the task that takes, renews and hands
//!   over this node's partitions.
//! - [`intake`]: `PartitionIntake`, a partition's events in order, with
//!   the replay's end marked.
//! - [`host`]: `PartitionHost`, the owned partitions' events and requests
//!   (replay first, then a plain subscription), as the ingress knows them.
//! - [`probe`]: is the server's mapping on? And the single-mode guard for
//!   a server without it.
//! - [`testing`]: a real nats-server started from a configuration, for tests.
//!
//! The partition function and the partitioned subjects are part of the
//! wire contract: see [`reco_messages::partition`].

pub mod assignment;
pub mod bucket;
pub mod fence;
pub mod host;
pub mod intake;
pub mod lease;
pub mod membership;
pub mod metrics;
pub mod nats_config;
pub mod node_id;
pub mod probe;
pub mod rebalancer;
pub mod roles;
pub mod testing;

pub use fence::Fence;
pub use host::{HostSettings, HostStatus, HostTraffic, PartitionHost};
pub use intake::{Intake, IntakeEvent, PartitionIntake, Start};
pub use lease::{Lease, LeaseError, Leases};
pub use membership::{LiveNodes, Membership};
pub use nats_config::ServerConfig;
pub use node_id::NodeId;
pub use rebalancer::{Ownership, Rebalancer, RebalancerSettings};
pub use roles::{Deployment, Role, RoleUsers};
