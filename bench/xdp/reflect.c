// SPDX-License-Identifier: GPL-2.0
//
// The world end's reflector for bench/compare-netns.sh CAPACITY=1: every
// relayed datagram goes straight back, to the peer as the peer's answer and
// to a client (ChannelData) as the client's next ChannelData, so injected
// packets circle through the server until one side saturates. Swapping the
// addresses and ports leaves both checksums valid. PEER_IP_BE: the peer's
// address as a network-order integer (-D), for an IPv4 peer; with an IPv6
// peer (PEER6=1) every IPv6 UDP datagram is the peer's.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#define SEC(n) __attribute__((section(n), used))
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
// [0]: 1 while reflecting; [1]: packets reflected.
struct {
	int (*type)[BPF_MAP_TYPE_ARRAY];
	int (*max_entries)[2];
	__u32 *key;
	__u64 *value;
} reflector SEC(".maps");
static int on(void)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&reflector, &k);
	return v && *v;
}

static int reflected(void)
{
	__u32 k = 1;
	__u64 *n = bpf_map_lookup_elem(&reflector, &k);
	if (n)
		__sync_fetch_and_add(n, 1);
	return XDP_TX;
}

static void swap_macs(struct ethhdr *eth)
{
	unsigned char mac[ETH_ALEN];
	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
}

static void swap_ports(struct udphdr *udp)
{
	__be16 p = udp->source;
	udp->source = udp->dest;
	udp->dest = p;
}

SEC("xdp") int reflect(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	if (eth->h_proto == __builtin_bswap16(ETH_P_IPV6)) {
		struct ipv6hdr *ip = (void *)(eth + 1);
		struct udphdr *udp = (void *)(ip + 1);
		if ((void *)(udp + 1) > end || ip->nexthdr != IPPROTO_UDP || !on())
			return XDP_PASS;
		struct in6_addr a = ip->saddr;
		ip->saddr = ip->daddr;
		ip->daddr = a;
		swap_macs(eth);
		swap_ports(udp);
		return reflected();
	}
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	unsigned char *first = (void *)(udp + 1);
	if ((void *)(first + 1) > end || eth->h_proto != __builtin_bswap16(ETH_P_IP) || ip->ihl != 5 ||
	    ip->protocol != IPPROTO_UDP || !on())
		return XDP_PASS;
	// Relayed data only: anything to the peer, ChannelData to a client.
	if (ip->daddr != PEER_IP_BE && (*first < 0x40 || *first > 0x7f))
		return XDP_PASS;
	__be32 a = ip->saddr;
	ip->saddr = ip->daddr;
	ip->daddr = a;
	swap_macs(eth);
	swap_ports(udp);
	return reflected();
}
char LICENSE[] SEC("license") = "GPL";
