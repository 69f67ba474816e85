// SPDX-License-Identifier: GPL-2.0
//
// bench/compare-netns.sh ROUTER=1: a two-port bridge in XDP. What comes in
// on one end of the router namespace leaves by the other. TO_WORLD and
// TO_SERVER: the two ends' ifindexes (-D).
#include <linux/bpf.h>
static long (*bpf_redirect)(__u32 ifindex, __u64 flags) = (void *)BPF_FUNC_redirect;
__attribute__((section("xdp"), used)) int hop(struct xdp_md *ctx)
{
	return bpf_redirect(ctx->ingress_ifindex == TO_WORLD ? TO_SERVER : TO_WORLD, 0);
}
char LICENSE[] __attribute__((section("license"), used)) = "GPL";
