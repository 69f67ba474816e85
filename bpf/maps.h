// SPDX-License-Identifier: MIT OR GPL-2.0
//
// The maps natbridge's workers share with the XDP program (relay.bpf.c).
// Keep in step with src/xdp/maps.rs, field for field. Included by
// relay.bpf.c after its SEC, __uint and __type macros.

#ifndef NATBRIDGE_MAPS_H
#define NATBRIDGE_MAPS_H

// An address in network byte order; IPv4 as ::ffff:a.b.c.d.
struct addr {
	__be32 w[4];
};

// ChannelData from a client to one of our listeners.
struct client_key {
	struct addr client_ip;
	__be16 client_port;
	__be16 server_port;
	__be16 channel;
	__u16 pad;
};

struct client_route {
	// All zero: any of our addresses (a wildcard listener) until the first
	// packet to one of them, which the program then keeps.
	struct addr server_ip;
	struct addr relay_ip; // the relay of the peer's family
	struct addr peer_ip;
	__be16 relay_port;
	__be16 peer_port;
	__u8 peer_mac[6]; // learnt from the peer's packets; zero until then
	// The client's neighbour as last written into the reverse entry: while
	// packets come from it, that entry needs no lookup.
	__u8 client_mac_sent[6];
	__u32 traffic_slot; // the allocation's counters in TRAFFIC
	__u32 pad;
	__u64 expires_ns; // CLOCK_MONOTONIC; the earliest of allocation, permission, channel
	__u64 allocation;
};

// A datagram from a peer to a relay port.
struct peer_key {
	struct addr peer_ip;
	struct addr relay_ip;
	__be16 peer_port;
	__be16 relay_port;
};

struct peer_route {
	struct addr server_ip; // zero until the client's own traffic shows which address it uses
	struct addr client_ip;
	__be16 client_port;
	__be16 server_port;
	__be16 channel;
	__u16 pad;
	__u8 client_mac[6]; // learnt from the client's packets; zero until then
	__u8 peer_mac_sent[6]; // as client_route.client_mac_sent, the other way
	__u32 traffic_slot;
	__u64 expires_ns;
	__u64 allocation;
};

// Per allocation and CPU, in the slot user space gave the allocation: an
// array lookup costs next to nothing, and per-CPU counters need no atomics.
struct traffic {
	__u64 packets_to_peer;
	__u64 bytes_to_peer;
	__u64 packets_to_client;
	__u64 bytes_to_client;
};

struct settings {
	__u32 max_ip_len; // the interface MTU: longer packets go to user space
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 131072);
	__type(key, struct client_key);
	__type(value, struct client_route);
} CLIENT_ROUTES SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 131072);
	__type(key, struct peer_key);
	__type(value, struct peer_route);
} PEER_ROUTES SEC(".maps");

#define TRAFFIC_SLOTS 65536

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TRAFFIC_SLOTS);
	__type(key, __u32);
	__type(value, struct traffic);
} TRAFFIC SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct addr);
	__type(value, __u8);
} OWN_ADDRESSES SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct settings);
} SETTINGS SEC(".maps");

// Why packets went the way they did, per CPU (the natbridge_xdp_packets_total
// metric). Keep in step with src/xdp/maps.rs VERDICTS.
enum verdict {
	V_TO_PEER,       // relayed client -> peer
	V_TO_CLIENT,     // relayed peer -> client
	V_NOT_CHANNEL,   // peer-shaped, but no route: user space
	V_UNPADDED,      // ChannelData length not exactly the datagram's
	V_EXPIRED,       // route past its expiry: user space refuses it
	V_ADDRESS,       // sent to an address that is not ours / not learnt yet
	V_NEXT_HOP,      // the neighbour to send to is not learnt yet
	V_TOO_BIG,       // over the MTU once rewritten
	V_NO_CHECKSUM,   // no UDP checksum where IPv6 needs one: user space computes it
	V_COUNT,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, V_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} VERDICTS SEC(".maps");

#endif
