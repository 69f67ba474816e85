//! Which node (which `--url`) each peer of `bench signaling` connects to when
//! several are given, and so which signals cross nodes. A peer signals the
//! next member of its room (the last one the first), so a signal crosses
//! when those two were assigned different URLs.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Spread {
    /// Each room's members in contiguous blocks, one block per URL: a room
    /// of 4 on 2 nodes has 2 members on each, and 2 of its 4 signals cross
    /// nodes (a room of K on N nodes: N of K).
    Blocks,
    /// Member k of a room on URL k mod N: a room of 4 on 2 nodes alternates,
    /// and every one of its signals crosses nodes.
    RoundRobin,
}

/// The URL (index into `--url`) of peer `peer`, with `room_size` peers per
/// room and `nodes` URLs. Rooms are rotated over the URLs as well, so the
/// peers split evenly even when rooms are smaller than the node count.
pub fn node_of(spread: Spread, peer: u32, room_size: u32, nodes: u32) -> u32 {
    let nodes = nodes.max(1);
    let room_size = room_size.max(1);
    let (room, k) = (peer / room_size, peer % room_size);
    let within = match spread {
        Spread::Blocks => (u64::from(k) * u64::from(nodes) / u64::from(room_size)) as u32,
        Spread::RoundRobin => k % nodes,
    };
    ((u64::from(within) + u64::from(room)) % u64::from(nodes)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many of a full room's ring signals cross nodes.
    fn crossing(spread: Spread, room: u32, room_size: u32, nodes: u32) -> u32 {
        let at = |k: u32| node_of(spread, room * room_size + k, room_size, nodes);
        (0..room_size)
            .filter(|&k| at(k) != at((k + 1) % room_size))
            .count() as u32
    }

    #[test]
    fn blocks_cross_half_of_a_room_of_4_on_2_nodes() {
        for room in 0..4 {
            assert_eq!(crossing(Spread::Blocks, room, 4, 2), 2);
            assert_eq!(crossing(Spread::RoundRobin, room, 4, 2), 4);
        }
        let first: Vec<u32> = (0..8).map(|i| node_of(Spread::Blocks, i, 4, 2)).collect();
        assert_eq!(first, [0, 0, 1, 1, 1, 1, 0, 0]);
        let first: Vec<u32> = (0..8)
            .map(|i| node_of(Spread::RoundRobin, i, 4, 2))
            .collect();
        assert_eq!(first, [0, 1, 0, 1, 1, 0, 1, 0]);
    }

    #[test]
    fn peers_split_evenly_and_one_node_is_node_0() {
        for spread in [Spread::Blocks, Spread::RoundRobin] {
            for (room_size, nodes) in [(4, 2), (1, 2), (3, 2), (4, 3), (2, 5)] {
                let mut per = vec![0u32; nodes as usize];
                let peers = room_size * nodes * 10;
                for i in 0..peers {
                    per[node_of(spread, i, room_size, nodes) as usize] += 1;
                }
                assert!(
                    per.iter().all(|&n| n == peers / nodes),
                    "{spread:?} K={room_size} N={nodes}: {per:?}"
                );
            }
            assert!((0..100).all(|i| node_of(spread, i, 4, 1) == 0));
        }
    }
}
