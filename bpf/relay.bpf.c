// SPDX-License-Identifier: MIT OR GPL-2.0
//
// natbridge's XDP fast path for TURN channel data (IPv4, UDP clients).
//
// Two cases leave the machine without entering the socket layer:
//   ChannelData from a client  -> a UDP datagram from the relay address to the peer;
//   a UDP datagram from a peer -> ChannelData from our address to the client.
// Both go back out of the interface they came in on (XDP_TX).
// Only channels the workers put in the maps qualify: they put a channel there
// once it is bound and permitted, with the time it stops being valid, and
// remove it when the allocation ends. Everything else (STUN, Send and Data
// indications, padded frames, fragments, IP options, expired entries, the
// first packets of each direction) is passed to
// the kernel unchanged, and user space handles it as it always has.
//
// Built with clang -target bpf; needs only the kernel's UAPI headers, so the
// helpers are declared here instead of pulling in libbpf's headers.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name
#define INLINE static inline __attribute__((always_inline))

#define htons(x) __builtin_bswap16(x)
#define ntohs(x) __builtin_bswap16(x)

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static long (*bpf_xdp_adjust_head)(struct xdp_md *ctx, int delta) = (void *)BPF_FUNC_xdp_adjust_head;
static __s64 (*bpf_csum_diff)(__be32 *from, __u32 from_size, __be32 *to, __u32 to_size,
                              __wsum seed) = (void *)BPF_FUNC_csum_diff;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)BPF_FUNC_ktime_get_ns;

// Keep in step with src/xdp/maps.rs.

// ChannelData from a client to one of our listeners.
struct client_key {
	__be32 client_ip;
	__be16 client_port;
	__be16 server_port;
	__be16 channel;
	__u16 pad;
};

struct client_route {
	__be32 server_ip; // 0: any of our addresses (a wildcard listener)
	__be32 relay_ip;
	__be32 peer_ip;
	__be16 relay_port;
	__be16 peer_port;
	__u8 peer_mac[6]; // learnt from the peer's packets; zero until then
	__u16 pad;
	__u64 expires_ns; // CLOCK_MONOTONIC; the earliest of allocation, permission, channel
	__u64 allocation;
};

// A datagram from a peer to a relay port.
struct peer_key {
	__be32 peer_ip;
	__be32 relay_ip;
	__be16 peer_port;
	__be16 relay_port;
};

struct peer_route {
	__be32 server_ip; // 0 until the client's own traffic shows which address it uses
	__be32 client_ip;
	__be16 client_port;
	__be16 server_port;
	__be16 channel;
	__u16 pad;
	__u8 client_mac[6]; // learnt from the client's packets; zero until then
	__u16 pad2;
	__u64 expires_ns;
	__u64 allocation;
};

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

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct traffic);
} TRAFFIC SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __be32);
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
	V_TOO_BIG,       // over the MTU with the channel header
	V_COUNT,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, V_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} VERDICTS SEC(".maps");

INLINE int note(__u32 v, int action)
{
	__u64 *n = bpf_map_lookup_elem(&VERDICTS, &v);
	if (n)
		*n += 1;
	return action;
}

#define HEADERS_LEN (sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct udphdr))
#define CHANNEL_HEADER_LEN 4

// The UDP checksum's inputs that change, as 32-bit words for bpf_csum_diff.
struct csum_words {
	__be32 src;
	__be32 dst;
	__be16 sport;
	__be16 dport;
	__be16 pseudo_len; // the pseudo-header's copy of the UDP length
	__be16 len;
};

struct channel_header {
	__be16 channel;
	__be16 len;
};

INLINE __u16 fold(__s64 sum)
{
	__u32 c = (__u32)sum;
	c = (c & 0xffff) + (c >> 16);
	c = (c & 0xffff) + (c >> 16);
	return (__u16)~c;
}

// RFC 1624: the new checksum from the old one and the words that changed.
// An IPv4 UDP checksum of 0 means "none" and stays so.
INLINE __sum16 udp_checksum(__sum16 old, __be32 *from, __u32 from_size, __be32 *to, __u32 to_size)
{
	if (old == 0)
		return 0;
	__u16 c = fold(bpf_csum_diff(from, from_size, to, to_size, (__u16)~old));
	return c == 0 ? 0xffff : c;
}

INLINE void ip_checksum(struct iphdr *ip)
{
	ip->check = 0;
	ip->check = fold(bpf_csum_diff(0, 0, (__be32 *)ip, sizeof(*ip), 0));
}

// Frames go back out of the interface they came in on (XDP_TX), from our
// address on it (the frame's destination) to the neighbour that the other
// party's own packets came from: that party's next hop, as long as routes
// are symmetric, which a one-uplink server's are. The neighbour is learnt
// from the first packet each way, which user space relays; that also spares
// us bpf_fib_lookup, which refuses to work unless the interface forwards.
INLINE int learnt(const __u8 *mac)
{
	return (mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]) != 0;
}

// Written only when it changed: the entry is shared by every CPU.
INLINE void learn(__u8 *mac, const __u8 *seen)
{
	if ((mac[0] ^ seen[0]) | (mac[1] ^ seen[1]) | (mac[2] ^ seen[2]) | (mac[3] ^ seen[3]) |
	    (mac[4] ^ seen[4]) | (mac[5] ^ seen[5]))
		__builtin_memcpy(mac, seen, ETH_ALEN);
}

INLINE int is_own_address(__be32 ip)
{
	return bpf_map_lookup_elem(&OWN_ADDRESSES, &ip) != 0;
}

INLINE __u32 max_ip_len(void)
{
	__u32 zero = 0;
	struct settings *s = bpf_map_lookup_elem(&SETTINGS, &zero);
	return s ? s->max_ip_len : 0;
}

INLINE void count(__u64 allocation, int to_peer, __u64 bytes)
{
	struct traffic *t = bpf_map_lookup_elem(&TRAFFIC, &allocation);
	if (!t)
		return;
	if (to_peer) {
		__sync_fetch_and_add(&t->packets_to_peer, 1);
		__sync_fetch_and_add(&t->bytes_to_peer, bytes);
	} else {
		__sync_fetch_and_add(&t->packets_to_client, 1);
		__sync_fetch_and_add(&t->bytes_to_client, bytes);
	}
}

// ChannelData -> UDP to the peer: the 4-byte channel header goes, the
// addresses and ports become the relay's and the peer's.
INLINE int from_client(struct xdp_md *ctx, struct ethhdr *eth, struct iphdr *ip, struct udphdr *udp,
                       struct channel_header *ch, __u16 udp_len, __u64 now)
{
	struct client_key key = {
		.client_ip = ip->saddr,
		.client_port = udp->source,
		.server_port = udp->dest,
		.channel = ch->channel,
	};
	struct client_route *r = bpf_map_lookup_elem(&CLIENT_ROUTES, &key);
	if (!r)
		return -1;
	// Padded frames (allowed over UDP) and short ones are user space's.
	if (ntohs(ch->len) + CHANNEL_HEADER_LEN + sizeof(struct udphdr) != udp_len)
		return note(V_UNPADDED, XDP_PASS);
	if (now >= r->expires_ns)
		return note(V_EXPIRED, XDP_PASS);
	if (r->server_ip ? r->server_ip != ip->daddr : !is_own_address(ip->daddr))
		return note(V_ADDRESS, XDP_PASS);

	// The reply path needs the address the client talks to and the
	// neighbour its packets come through.
	struct peer_key pk = {
		.peer_ip = r->peer_ip,
		.relay_ip = r->relay_ip,
		.peer_port = r->peer_port,
		.relay_port = r->relay_port,
	};
	struct peer_route *back = bpf_map_lookup_elem(&PEER_ROUTES, &pk);
	if (back && back->allocation == r->allocation) {
		if (back->server_ip == 0)
			back->server_ip = ip->daddr;
		learn(back->client_mac, eth->h_source);
	}
	if (!learnt(r->peer_mac))
		return note(V_NEXT_HOP, XDP_PASS);

	struct iphdr nip = *ip;
	nip.saddr = r->relay_ip;
	nip.daddr = r->peer_ip;
	nip.tot_len = htons(ntohs(ip->tot_len) - CHANNEL_HEADER_LEN);
	nip.ttl = 64;
	ip_checksum(&nip);

	struct ethhdr neth;
	__builtin_memcpy(neth.h_dest, r->peer_mac, ETH_ALEN);
	__builtin_memcpy(neth.h_source, eth->h_dest, ETH_ALEN);
	neth.h_proto = htons(ETH_P_IP);

	struct udphdr nudp;
	nudp.source = r->relay_port;
	nudp.dest = r->peer_port;
	nudp.len = htons(udp_len - CHANNEL_HEADER_LEN);
	struct {
		struct csum_words w;
		struct channel_header ch;
	} from = {
		.w = {ip->saddr, ip->daddr, udp->source, udp->dest, udp->len, udp->len},
		.ch = *ch,
	};
	struct csum_words to = {nip.saddr, nip.daddr, nudp.source, nudp.dest, nudp.len, nudp.len};
	nudp.check = udp_checksum(udp->check, (__be32 *)&from, sizeof(from), (__be32 *)&to,
	                          sizeof(to));
	__u64 allocation = r->allocation;
	__u64 payload = udp_len - sizeof(struct udphdr) - CHANNEL_HEADER_LEN;

	if (bpf_xdp_adjust_head(ctx, CHANNEL_HEADER_LEN))
		return XDP_PASS;
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	if (data + HEADERS_LEN > end)
		return XDP_DROP;
	__builtin_memcpy(data, &neth, sizeof(neth));
	__builtin_memcpy(data + sizeof(neth), &nip, sizeof(nip));
	__builtin_memcpy(data + sizeof(neth) + sizeof(nip), &nudp, sizeof(nudp));
	count(allocation, 1, payload);
	return note(V_TO_PEER, XDP_TX);
}

// UDP from a peer -> ChannelData to the client: a 4-byte header goes in front
// of the payload, the addresses and ports become ours and the client's.
INLINE int from_peer(struct xdp_md *ctx, struct ethhdr *eth, struct iphdr *ip, struct udphdr *udp,
                     __u16 udp_len, __u64 now)
{
	struct peer_key key = {
		.peer_ip = ip->saddr,
		.relay_ip = ip->daddr,
		.peer_port = udp->source,
		.relay_port = udp->dest,
	};
	struct peer_route *r = bpf_map_lookup_elem(&PEER_ROUTES, &key);
	if (!r)
		return note(V_NOT_CHANNEL, XDP_PASS);
	if (now >= r->expires_ns)
		return note(V_EXPIRED, XDP_PASS);
	// The way to the peer, for the other direction.
	struct client_key ck = {
		.client_ip = r->client_ip,
		.client_port = r->client_port,
		.server_port = r->server_port,
		.channel = r->channel,
	};
	struct client_route *fwd = bpf_map_lookup_elem(&CLIENT_ROUTES, &ck);
	if (fwd && fwd->allocation == r->allocation)
		learn(fwd->peer_mac, eth->h_source);
	if (r->server_ip == 0)
		return note(V_ADDRESS, XDP_PASS);
	if (!learnt(r->client_mac))
		return note(V_NEXT_HOP, XDP_PASS);
	__u32 ip_len = ntohs(ip->tot_len) + CHANNEL_HEADER_LEN;
	if (ip_len > max_ip_len() || ip_len > 0xffff)
		return note(V_TOO_BIG, XDP_PASS);

	struct iphdr nip = *ip;
	nip.saddr = r->server_ip;
	nip.daddr = r->client_ip;
	nip.tot_len = htons(ip_len);
	nip.ttl = 64;
	ip_checksum(&nip);

	struct ethhdr neth;
	__builtin_memcpy(neth.h_dest, r->client_mac, ETH_ALEN);
	__builtin_memcpy(neth.h_source, eth->h_dest, ETH_ALEN);
	neth.h_proto = htons(ETH_P_IP);

	struct channel_header ch = {
		.channel = r->channel,
		.len = htons(udp_len - sizeof(struct udphdr)),
	};
	struct udphdr nudp;
	nudp.source = r->server_port;
	nudp.dest = r->client_port;
	nudp.len = htons(udp_len + CHANNEL_HEADER_LEN);
	struct csum_words from = {ip->saddr, ip->daddr, udp->source, udp->dest, udp->len, udp->len};
	struct {
		struct csum_words w;
		struct channel_header ch;
	} to = {
		.w = {nip.saddr, nip.daddr, nudp.source, nudp.dest, nudp.len, nudp.len},
		.ch = ch,
	};
	nudp.check = udp_checksum(udp->check, (__be32 *)&from, sizeof(from), (__be32 *)&to,
	                          sizeof(to));
	__u64 allocation = r->allocation;
	__u64 payload = udp_len - sizeof(struct udphdr);

	if (bpf_xdp_adjust_head(ctx, -CHANNEL_HEADER_LEN))
		return XDP_PASS;
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	if (data + HEADERS_LEN + CHANNEL_HEADER_LEN > end)
		return XDP_DROP;
	__builtin_memcpy(data, &neth, sizeof(neth));
	__builtin_memcpy(data + sizeof(neth), &nip, sizeof(nip));
	__builtin_memcpy(data + sizeof(neth) + sizeof(nip), &nudp, sizeof(nudp));
	__builtin_memcpy(data + HEADERS_LEN, &ch, sizeof(ch));
	count(allocation, 0, payload);
	return note(V_TO_CLIENT, XDP_TX);
}

SEC("xdp")
int natbridge_relay(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end || eth->h_proto != htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
		return XDP_PASS;
	// Fragments (MF set or an offset) are reassembled by the kernel.
	if (ip->frag_off & htons(0x3fff))
		return XDP_PASS;
	struct udphdr *udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > end)
		return XDP_PASS;
	__u16 udp_len = ntohs(udp->len);
	if (udp_len < sizeof(struct udphdr) || ntohs(ip->tot_len) != sizeof(*ip) + udp_len)
		return XDP_PASS;
	if ((void *)ip + sizeof(*ip) + udp_len > end)
		return XDP_PASS;

	__u64 now = bpf_ktime_get_ns();
	struct channel_header *ch = (void *)(udp + 1);
	if ((void *)(ch + 1) <= end) {
		__u16 number = ntohs(ch->channel);
		// RFC 5766's range, which user space accepts too (turn::wire).
		if (number >= 0x4000 && number <= 0x7fff) {
			int verdict = from_client(ctx, eth, ip, udp, ch, udp_len, now);
			if (verdict >= 0)
				return verdict;
		}
	}
	return from_peer(ctx, eth, ip, udp, udp_len, now);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
