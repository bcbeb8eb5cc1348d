//! Which node should own which partition: rendezvous (highest random
//! weight) hashing over the live nodes.
//!
//! Every node computes the same answer from the same set of live nodes, with
//! no coordination: partition `k` belongs to the node whose
//! `weight(node, k)` is highest. When a node joins it takes about `1/n` of
//! the partitions, each from whoever held it; when one leaves only its own
//! partitions move, spread over the others. Nodes whose views differ for a
//! moment cannot both own a partition — the lease decides — they only
//! disagree about who *should*.

use crate::node_id::NodeId;
use reco_messages::partition::{fnv1a32, Partition};
use std::collections::{BTreeMap, BTreeSet};

/// The splitmix64 finaliser: spreads close inputs over all 64 bits.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The weight of `node` for partition `k`: the highest wins.
pub fn weight(node: &NodeId, k: Partition) -> u64 {
    let id = node.as_str().as_bytes();
    let h = (u64::from(fnv1a32(id)) << 32) | u64::from(fnv1a32(&[id, b"#"].concat()));
    mix(mix(h) ^ mix(u64::from(k.0).wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

/// The node that should own `k` among `nodes` (`None` when there is none).
pub fn owner_of(k: Partition, nodes: &[NodeId]) -> Option<&NodeId> {
    nodes.iter().max_by(|a, b| {
        weight(a, k)
            .cmp(&weight(b, k))
            .then_with(|| b.as_str().cmp(a.as_str()))
    })
}

/// The owner of every partition `0..partitions` among `nodes`.
pub fn assign(partitions: u32, nodes: &[NodeId]) -> BTreeMap<Partition, NodeId> {
    (0..partitions)
        .map(Partition)
        .filter_map(|k| owner_of(k, nodes).map(|n| (k, n.clone())))
        .collect()
}

/// The partitions `node` should own among `nodes`.
pub fn desired(node: &NodeId, partitions: u32, nodes: &[NodeId]) -> BTreeSet<Partition> {
    (0..partitions)
        .map(Partition)
        .filter(|&k| owner_of(k, nodes) == Some(node))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(names: &[&str]) -> Vec<NodeId> {
        names.iter().map(|n| NodeId::new(n).unwrap()).collect()
    }

    fn per_node(map: &BTreeMap<Partition, NodeId>) -> BTreeMap<&str, usize> {
        let mut counts = BTreeMap::new();
        for node in map.values() {
            *counts.entry(node.as_str()).or_default() += 1;
        }
        counts
    }

    #[test]
    fn every_partition_has_exactly_one_owner_and_none_without_nodes() {
        let map = assign(64, &nodes(&["a", "b", "c"]));
        assert_eq!(map.len(), 64);
        assert!(assign(64, &[]).is_empty());
        let only = nodes(&["solo"]);
        assert_eq!(desired(&only[0], 64, &only).len(), 64);
    }

    #[test]
    fn partitions_spread_evenly_over_nodes() {
        for names in [
            vec!["web-1-100", "web-2-200", "web-3-300"],
            vec!["a", "b", "c", "d"],
            vec!["host-41234", "host-41235", "host-41236"],
        ] {
            let ns = nodes(&names);
            let map = assign(256, &ns);
            let counts = per_node(&map);
            let fair = 256 / ns.len();
            for (node, count) in &counts {
                assert!(
                    *count > fair / 2 && *count < fair * 3 / 2,
                    "{node} got {count} of 256 partitions ({counts:?})"
                );
            }
            assert_eq!(counts.len(), ns.len());
        }
    }

    #[test]
    fn a_joining_node_takes_partitions_only_from_others_and_about_a_fair_share() {
        let before = assign(256, &nodes(&["a", "b", "c"]));
        let after = assign(256, &nodes(&["a", "b", "c", "d"]));
        let moved: Vec<_> = (0..256)
            .map(Partition)
            .filter(|k| before[k] != after[k])
            .collect();
        assert!(moved.iter().all(|k| after[k].as_str() == "d"));
        assert!(
            (32..96).contains(&moved.len()),
            "{} partitions moved",
            moved.len()
        );
    }

    #[test]
    fn a_leaving_node_moves_only_its_own_partitions() {
        let before = assign(256, &nodes(&["a", "b", "c"]));
        let after = assign(256, &nodes(&["a", "c"]));
        for k in (0..256).map(Partition) {
            if before[&k].as_str() != "b" {
                assert_eq!(before[&k], after[&k], "partition {k} moved");
            }
        }
    }

    #[test]
    fn every_node_computes_the_same_assignment_whatever_the_order() {
        let one = assign(64, &nodes(&["a", "b", "c"]));
        let other = assign(64, &nodes(&["c", "a", "b"]));
        assert_eq!(one, other);
    }
}
