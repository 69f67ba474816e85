// SPDX-License-Identifier: MIT OR GPL-2.0
//
// natbridge's XDP fast path for TURN channel data (UDP clients; IPv4, IPv6
// and either family to the other).
//
// Two cases leave the machine without entering the socket layer:
//   ChannelData from a client  -> a UDP datagram from the relay address to the peer;
//   a UDP datagram from a peer -> ChannelData from our address to the client.
// Both go back out of the interface they came in on (XDP_TX).
// Only channels the workers put in the maps qualify: they put a channel there
// once it is bound and permitted, with the time it stops being valid, and
// remove it when the allocation ends. Everything else (STUN, Send and Data
// indications, padded frames, fragments, IP options, IPv6 extension headers,
// expired entries, the first packets of each direction) is passed to the
// kernel unchanged, and user space handles it as it always has.
//
// Addresses are kept as 16 bytes, IPv4 ones as ::ffff:a.b.c.d, so one set of
// maps serves both families; a route's output family is its target's
// (the peer's towards the peer, the client's towards the client).
//
// Built with clang -target bpf; needs only the kernel's UAPI headers, so the
// helpers are declared here instead of pulling in libbpf's headers.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name
#define INLINE static inline __attribute__((always_inline))

#define htons(x) __builtin_bswap16(x)
#define ntohs(x) __builtin_bswap16(x)
#define htonl(x) __builtin_bswap32(x)

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static long (*bpf_xdp_adjust_head)(struct xdp_md *ctx, int delta) = (void *)BPF_FUNC_xdp_adjust_head;
static __s64 (*bpf_csum_diff)(__be32 *from, __u32 from_size, __be32 *to, __u32 to_size,
                              __wsum seed) = (void *)BPF_FUNC_csum_diff;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)BPF_FUNC_ktime_get_ns;

#include "maps.h"

INLINE int note(__u32 v, int action)
{
	__u64 *n = bpf_map_lookup_elem(&VERDICTS, &v);
	if (n)
		*n += 1;
	return action;
}

#define ETH_LEN sizeof(struct ethhdr)
#define UDP_LEN sizeof(struct udphdr)
#define IP4_LEN sizeof(struct iphdr)
#define IP6_LEN sizeof(struct ipv6hdr)
#define CHANNEL_HEADER_LEN 4

INLINE int is_v4(const struct addr *a)
{
	return a->w[0] == 0 && a->w[1] == 0 && a->w[2] == htonl(0xffff);
}

INLINE int is_zero(const struct addr *a)
{
	return (a->w[0] | a->w[1] | a->w[2] | a->w[3]) == 0;
}

INLINE int same(const struct addr *a, const struct addr *b)
{
	return ((a->w[0] ^ b->w[0]) | (a->w[1] ^ b->w[1]) | (a->w[2] ^ b->w[2]) | (a->w[3] ^ b->w[3])) ==
	       0;
}

// What the parser found, in a form both families share.
struct packet {
	struct addr src;
	struct addr dst;
	__be16 v4_id;
	__be16 v4_frag; // DF at most: fragments are passed
	__u8 tos;       // DSCP and ECN: IPv4's TOS, IPv6's traffic class
	__u8 v6;
	__u16 ip_header_len;
	__u16 udp_len;
};

// The UDP checksum's inputs that change, as 32-bit words for bpf_csum_diff.
// IPv4 addresses go in as ::ffff:a.b.c.d: the 0xffff word is zero in ones'
// complement, so one layout serves both families' pseudo-headers (whose
// protocol and length words sum the same too).
struct csum_words {
	struct addr src;
	struct addr dst;
	__be16 sport;
	__be16 dport;
	__be16 pseudo_len; // the pseudo-header's copy of the UDP length
	__be16 len;
};

struct channel_header {
	__be16 channel;
	__be16 len;
};

struct csum_words_channel {
	struct csum_words w;
	struct channel_header ch;
};

INLINE __u16 fold(__s64 sum)
{
	__u32 c = (__u32)sum;
	c = (c & 0xffff) + (c >> 16);
	c = (c & 0xffff) + (c >> 16);
	return (__u16)~c;
}

// RFC 1624: the new checksum from the old one and the words that changed.
// An IPv4 UDP checksum of 0 means "none" and stays so (the callers pass
// such datagrams to user space when the result is IPv6, which needs one).
INLINE __sum16 udp_checksum(__sum16 old, __be32 *from, __u32 from_size, __be32 *to, __u32 to_size)
{
	if (old == 0)
		return 0;
	__u16 c = fold(bpf_csum_diff(from, from_size, to, to_size, (__u16)~old));
	return c == 0 ? 0xffff : c;
}

// The kernel drops an IPv4 header whose checksum is wrong; so must we, or
// we would relay what user space never sees. Ones' complement sums do not
// depend on byte order, so the words are added as they lie.
INLINE int ip_header_valid(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u32 s = 0;
#pragma unroll
	for (int i = 0; i < (int)(sizeof(*ip) / 2); i++)
		s += w[i];
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return s == 0xffff;
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
// A party whose packets arrive on another interface is never learnt here,
// so its traffic stays in user space.
INLINE int learnt(const __u8 *mac)
{
	return (mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]) != 0;
}

INLINE int same_mac(const __u8 *a, const __u8 *b)
{
	return ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4]) |
	        (a[5] ^ b[5])) == 0;
}

// Written only when it changed: the entry is shared by every CPU.
INLINE void learn(__u8 *mac, const __u8 *seen)
{
	if (!same_mac(mac, seen))
		__builtin_memcpy(mac, seen, ETH_ALEN);
}

INLINE int is_own_address(const struct addr *ip)
{
	return bpf_map_lookup_elem(&OWN_ADDRESSES, (void *)ip) != 0;
}

INLINE __u32 max_ip_len(void)
{
	__u32 zero = 0;
	struct settings *s = bpf_map_lookup_elem(&SETTINGS, &zero);
	return s ? s->max_ip_len : 0;
}

INLINE void count(__u32 slot, int to_peer, __u64 bytes)
{
	struct traffic *t = bpf_map_lookup_elem(&TRAFFIC, &slot);
	if (!t)
		return;
	if (to_peer) {
		t->packets_to_peer += 1;
		t->bytes_to_peer += bytes;
	} else {
		t->packets_to_client += 1;
		t->bytes_to_client += bytes;
	}
}

// The headers of the datagram that leaves, gathered before the frame's
// start moves (the old headers are overwritten then).
struct out {
	struct addr src;
	struct addr dst;
	__be16 sport;
	__be16 dport;
	__u16 udp_len;
	__sum16 check;
	__u8 dst_mac[ETH_ALEN];
	__u8 src_mac[ETH_ALEN];
	__u8 v6;
	__u8 tos;
	__be16 v4_id;
	__be16 v4_frag;
};

INLINE __u32 ip_header_len(int v6)
{
	return v6 ? IP6_LEN : IP4_LEN;
}

// Moves the frame's start by `delta` and writes the new Ethernet, IP and
// UDP headers (and `ch`, if `with_channel`) there. The payload stays where
// it is. Returns an XDP action.
INLINE int rewrite(struct xdp_md *ctx, int delta, const struct out *o, int with_channel,
                   const struct channel_header *ch)
{
	struct ethhdr neth;
	__builtin_memcpy(neth.h_dest, o->dst_mac, ETH_ALEN);
	__builtin_memcpy(neth.h_source, o->src_mac, ETH_ALEN);
	struct udphdr nudp = {
		.source = o->sport,
		.dest = o->dport,
		.len = htons(o->udp_len),
		.check = o->check,
	};
	__u32 extra = with_channel ? CHANNEL_HEADER_LEN : 0;

	if (o->v6) {
		struct ipv6hdr nip = {};
		// Traffic class kept, flow label left to the next hop: a new flow.
		*(__be32 *)&nip = htonl(0x60000000 | ((__u32)o->tos << 20));
		nip.payload_len = htons(o->udp_len);
		nip.nexthdr = IPPROTO_UDP;
		nip.hop_limit = 64;
		__builtin_memcpy(&nip.saddr, &o->src, 16);
		__builtin_memcpy(&nip.daddr, &o->dst, 16);
		neth.h_proto = htons(ETH_P_IPV6);
		if (bpf_xdp_adjust_head(ctx, delta))
			return XDP_PASS;
		void *data = (void *)(long)ctx->data;
		void *end = (void *)(long)ctx->data_end;
		if (data + ETH_LEN + IP6_LEN + UDP_LEN + extra > end)
			return XDP_DROP;
		__builtin_memcpy(data, &neth, ETH_LEN);
		__builtin_memcpy(data + ETH_LEN, &nip, IP6_LEN);
		__builtin_memcpy(data + ETH_LEN + IP6_LEN, &nudp, UDP_LEN);
		if (with_channel)
			__builtin_memcpy(data + ETH_LEN + IP6_LEN + UDP_LEN, ch, CHANNEL_HEADER_LEN);
		return XDP_TX;
	}

	struct iphdr nip = {
		.version = 4,
		.ihl = 5,
		.tos = o->tos,
		.tot_len = htons(IP4_LEN + o->udp_len),
		.id = o->v4_id,
		.frag_off = o->v4_frag,
		.ttl = 64,
		.protocol = IPPROTO_UDP,
		.saddr = o->src.w[3],
		.daddr = o->dst.w[3],
	};
	ip_checksum(&nip);
	neth.h_proto = htons(ETH_P_IP);
	if (bpf_xdp_adjust_head(ctx, delta))
		return XDP_PASS;
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	if (data + ETH_LEN + IP4_LEN + UDP_LEN + extra > end)
		return XDP_DROP;
	__builtin_memcpy(data, &neth, ETH_LEN);
	__builtin_memcpy(data + ETH_LEN, &nip, IP4_LEN);
	__builtin_memcpy(data + ETH_LEN + IP4_LEN, &nudp, UDP_LEN);
	if (with_channel)
		__builtin_memcpy(data + ETH_LEN + IP4_LEN + UDP_LEN, ch, CHANNEL_HEADER_LEN);
	return XDP_TX;
}

// The IP fields that carry over, whichever family the datagram leaves in:
// DSCP/ECN, and IPv4's id and DF when it stays IPv4 (from IPv6: id 0 and
// DF, RFC 6864's atomic datagram).
INLINE void carry_over(struct out *o, const struct packet *p)
{
	o->tos = p->tos;
	o->v4_id = p->v6 ? 0 : p->v4_id;
	o->v4_frag = p->v6 ? htons(0x4000) : p->v4_frag;
}

// ChannelData -> UDP to the peer: the 4-byte channel header goes, the
// addresses and ports become the relay's and the peer's.
INLINE int from_client(struct xdp_md *ctx, struct ethhdr *eth, const struct packet *p,
                       struct udphdr *udp, struct channel_header *ch, __u64 now)
{
	struct client_key key = {
		.client_ip = p->src,
		.client_port = udp->source,
		.server_port = udp->dest,
		.channel = ch->channel,
	};
	struct client_route *r = bpf_map_lookup_elem(&CLIENT_ROUTES, &key);
	if (!r)
		return -1;
	// Padded frames (allowed over UDP) and short ones are user space's.
	if (ntohs(ch->len) + CHANNEL_HEADER_LEN + UDP_LEN != p->udp_len)
		return note(V_UNPADDED, XDP_PASS);
	if (now >= r->expires_ns)
		return note(V_EXPIRED, XDP_PASS);
	if (is_zero(&r->server_ip)) {
		if (!is_own_address(&p->dst))
			return note(V_ADDRESS, XDP_PASS);
		r->server_ip = p->dst;
	} else if (!same(&r->server_ip, &p->dst)) {
		return note(V_ADDRESS, XDP_PASS);
	}

	// The reply path needs the address the client talks to and the
	// neighbour its packets come through; looked up only when they change.
	if (!same_mac(r->client_mac_sent, eth->h_source)) {
		struct peer_key pk = {
			.peer_ip = r->peer_ip,
			.relay_ip = r->relay_ip,
			.peer_port = r->peer_port,
			.relay_port = r->relay_port,
		};
		struct peer_route *back = bpf_map_lookup_elem(&PEER_ROUTES, &pk);
		if (back && back->allocation == r->allocation) {
			if (is_zero(&back->server_ip))
				back->server_ip = p->dst;
			learn(back->client_mac, eth->h_source);
			__builtin_memcpy(r->client_mac_sent, eth->h_source, ETH_ALEN);
		}
	}
	if (!learnt(r->peer_mac))
		return note(V_NEXT_HOP, XDP_PASS);

	struct out o = {
		.src = r->relay_ip,
		.dst = r->peer_ip,
		.sport = r->relay_port,
		.dport = r->peer_port,
		.udp_len = p->udp_len - CHANNEL_HEADER_LEN,
		.v6 = !is_v4(&r->peer_ip),
	};
	if (ip_header_len(o.v6) + o.udp_len > max_ip_len())
		return note(V_TOO_BIG, XDP_PASS);
	if (udp->check == 0 && (p->v6 || o.v6))
		return note(V_NO_CHECKSUM, XDP_PASS);
	__builtin_memcpy(o.dst_mac, r->peer_mac, ETH_ALEN);
	__builtin_memcpy(o.src_mac, eth->h_dest, ETH_ALEN);
	carry_over(&o, p);

	struct csum_words_channel from = {
		.w = {p->src, p->dst, udp->source, udp->dest, udp->len, udp->len},
		.ch = *ch,
	};
	struct csum_words to = {o.src, o.dst, o.sport, o.dport, htons(o.udp_len), htons(o.udp_len)};
	o.check = udp_checksum(udp->check, (__be32 *)&from, sizeof(from), (__be32 *)&to, sizeof(to));
	__u32 slot = r->traffic_slot;
	__u64 payload = o.udp_len - UDP_LEN;

	int delta = (int)(p->ip_header_len + UDP_LEN + CHANNEL_HEADER_LEN) -
	            (int)(ip_header_len(o.v6) + UDP_LEN);
	int action = rewrite(ctx, delta, &o, 0, 0);
	if (action == XDP_TX) {
		count(slot, 1, payload);
		return note(V_TO_PEER, XDP_TX);
	}
	return action;
}

// UDP from a peer -> ChannelData to the client: a 4-byte header goes in front
// of the payload, the addresses and ports become ours and the client's.
INLINE int from_peer(struct xdp_md *ctx, struct ethhdr *eth, const struct packet *p,
                     struct udphdr *udp, __u64 now)
{
	struct peer_key key = {
		.peer_ip = p->src,
		.relay_ip = p->dst,
		.peer_port = udp->source,
		.relay_port = udp->dest,
	};
	struct peer_route *r = bpf_map_lookup_elem(&PEER_ROUTES, &key);
	if (!r)
		return note(V_NOT_CHANNEL, XDP_PASS);
	if (now >= r->expires_ns)
		return note(V_EXPIRED, XDP_PASS);
	// The way to the peer, for the other direction.
	if (!same_mac(r->peer_mac_sent, eth->h_source)) {
		struct client_key ck = {
			.client_ip = r->client_ip,
			.client_port = r->client_port,
			.server_port = r->server_port,
			.channel = r->channel,
		};
		struct client_route *fwd = bpf_map_lookup_elem(&CLIENT_ROUTES, &ck);
		if (fwd && fwd->allocation == r->allocation) {
			learn(fwd->peer_mac, eth->h_source);
			__builtin_memcpy(r->peer_mac_sent, eth->h_source, ETH_ALEN);
		}
	}
	if (is_zero(&r->server_ip))
		return note(V_ADDRESS, XDP_PASS);
	if (!learnt(r->client_mac))
		return note(V_NEXT_HOP, XDP_PASS);

	__u32 udp_len = (__u32)p->udp_len + CHANNEL_HEADER_LEN;
	struct out o = {
		.src = r->server_ip,
		.dst = r->client_ip,
		.sport = r->server_port,
		.dport = r->client_port,
		.udp_len = udp_len,
		.v6 = !is_v4(&r->client_ip),
	};
	if (udp_len > 0xffff || ip_header_len(o.v6) + udp_len > max_ip_len())
		return note(V_TOO_BIG, XDP_PASS);
	if (udp->check == 0 && (p->v6 || o.v6))
		return note(V_NO_CHECKSUM, XDP_PASS);
	__builtin_memcpy(o.dst_mac, r->client_mac, ETH_ALEN);
	__builtin_memcpy(o.src_mac, eth->h_dest, ETH_ALEN);
	carry_over(&o, p);

	struct channel_header ch = {
		.channel = r->channel,
		.len = htons(p->udp_len - UDP_LEN),
	};
	struct csum_words from = {p->src, p->dst, udp->source, udp->dest, udp->len, udp->len};
	struct csum_words_channel to = {
		.w = {o.src, o.dst, o.sport, o.dport, htons(o.udp_len), htons(o.udp_len)},
		.ch = ch,
	};
	o.check = udp_checksum(udp->check, (__be32 *)&from, sizeof(from), (__be32 *)&to, sizeof(to));
	__u32 slot = r->traffic_slot;
	__u64 payload = p->udp_len - UDP_LEN;

	int delta = (int)(p->ip_header_len + UDP_LEN) -
	            (int)(ip_header_len(o.v6) + UDP_LEN + CHANNEL_HEADER_LEN);
	int action = rewrite(ctx, delta, &o, 1, &ch);
	if (action == XDP_TX) {
		count(slot, 0, payload);
		return note(V_TO_CLIENT, XDP_TX);
	}
	return action;
}

SEC("xdp")
int natbridge_relay(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	struct packet p = {};
	struct udphdr *udp;
	if (eth->h_proto == htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end || ip->version != 4 || ip->ihl != 5 ||
		    ip->protocol != IPPROTO_UDP || !ip_header_valid(ip))
			return XDP_PASS;
		// Fragments (MF set or an offset) are reassembled by the kernel.
		if (ip->frag_off & htons(0x3fff))
			return XDP_PASS;
		udp = (void *)(ip + 1);
		if ((void *)(udp + 1) > end)
			return XDP_PASS;
		p.udp_len = ntohs(udp->len);
		if (ntohs(ip->tot_len) != IP4_LEN + p.udp_len)
			return XDP_PASS;
		p.src.w[2] = htonl(0xffff);
		p.src.w[3] = ip->saddr;
		p.dst.w[2] = htonl(0xffff);
		p.dst.w[3] = ip->daddr;
		p.tos = ip->tos;
		p.v4_id = ip->id;
		p.v4_frag = ip->frag_off;
		p.ip_header_len = IP4_LEN;
	} else if (eth->h_proto == htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip = (void *)(eth + 1);
		// Extension headers (fragments among them) are the kernel's.
		if ((void *)(ip + 1) > end || ip->version != 6 || ip->nexthdr != IPPROTO_UDP)
			return XDP_PASS;
		udp = (void *)(ip + 1);
		if ((void *)(udp + 1) > end)
			return XDP_PASS;
		p.udp_len = ntohs(udp->len);
		if (ntohs(ip->payload_len) != p.udp_len)
			return XDP_PASS;
		__builtin_memcpy(&p.src, &ip->saddr, 16);
		__builtin_memcpy(&p.dst, &ip->daddr, 16);
		p.tos = (ip->priority << 4) | (ip->flow_lbl[0] >> 4);
		p.v6 = 1;
		p.ip_header_len = IP6_LEN;
	} else {
		return XDP_PASS;
	}
	if (p.udp_len < UDP_LEN || (void *)udp + p.udp_len > end)
		return XDP_PASS;

	__u64 now = bpf_ktime_get_ns();
	struct channel_header *ch = (void *)(udp + 1);
	if ((void *)(ch + 1) <= end) {
		__u16 number = ntohs(ch->channel);
		// RFC 5766's range, which user space accepts too (turn::wire).
		if (number >= 0x4000 && number <= 0x7fff) {
			int verdict = from_client(ctx, eth, &p, udp, ch, now);
			if (verdict >= 0)
				return verdict;
		}
	}
	return from_peer(ctx, eth, &p, udp, now);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
