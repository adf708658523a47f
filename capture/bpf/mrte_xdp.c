// XDP program of mrte's AF_XDP source: TCP frames to or from a server port go to the AF_XDP
// socket of their RX queue with a kernel receive timestamp in the metadata area; everything
// else goes on to the kernel stack untouched. Fragments, IPv6 extension headers and truncated
// TCP headers are sent to the socket too, so that user space counts them instead of losing them.
// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* The metadata written in front of each redirected frame; user space checks `magic`. */
struct mrte_meta {
	__u32 magic;
	__u32 reserved;
	__u64 mono_ns;
};

#define MRTE_META_MAGIC 0x4d525445

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

/* Server ports: index = port, value 1 = server port. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} ports SEC(".maps");

/* Per-CPU counters: 0 = frames passed to the stack (not ours), 1 = frames redirected,
 * 2 = frames redirected without a timestamp (no metadata room). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

static __always_inline void count(__u32 k)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &k);
	if (c)
		*c += 1;
}

static __always_inline int is_server_port(__be16 p)
{
	__u32 k = bpf_ntohs(p);
	__u8 *v = bpf_map_lookup_elem(&ports, &k);
	return v && *v;
}

static __always_inline int wanted(void *data, void *end)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return 0;
	__be16 proto = eth->h_proto;
	void *l3 = eth + 1;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD) ||
		    proto == bpf_htons(0x9100)) {
			struct vlan_hdr *v = l3;
			if ((void *)(v + 1) > end)
				return 0;
			proto = v->proto;
			l3 = v + 1;
		}
	}
	struct tcphdr *tcp;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;
		if ((void *)(ip + 1) > end)
			return 0;
		if (ip->protocol != IPPROTO_TCP)
			return 0;
		if (ip->frag_off & bpf_htons(0x3fff))
			return 1;
		tcp = (void *)ip + (ip->ihl & 0xf) * 4;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;
		if ((void *)(ip6 + 1) > end)
			return 0;
		if (ip6->nexthdr != IPPROTO_TCP)
			return ip6->nexthdr != IPPROTO_UDP && ip6->nexthdr != 58;
		tcp = (void *)(ip6 + 1);
	} else {
		return 0;
	}
	if ((void *)(tcp + 1) > end)
		return 1;
	return is_server_port(tcp->source) || is_server_port(tcp->dest);
}

SEC("xdp")
int mrte_xdp(struct xdp_md *ctx)
{
	if (!wanted((void *)(long)ctx->data, (void *)(long)ctx->data_end)) {
		count(0);
		return XDP_PASS;
	}
	count(1);
	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct mrte_meta)) == 0) {
		struct mrte_meta *m = (void *)(long)ctx->data_meta;
		if ((void *)(m + 1) <= (void *)(long)ctx->data) {
			m->magic = MRTE_META_MAGIC;
			m->reserved = 0;
			m->mono_ns = bpf_ktime_get_ns();
		}
	} else {
		count(2);
	}
	return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
}

char _license[] SEC("license") = "GPL";
