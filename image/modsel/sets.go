package modsel

// Required are the modules every appliance image carries: IPVS and all its
// mainline schedulers, bonding, conntrack/NAT/nftables and the nft
// expressions lbcore uses, tunnels for IPVS TUN mode, VLANs, and NIC drivers
// for virtio and common server NICs.
var Required = []string{
	// IPVS core and schedulers
	"ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_lc", "ip_vs_wlc", "ip_vs_lblc", "ip_vs_lblcr",
	"ip_vs_dh", "ip_vs_sh", "ip_vs_sed", "ip_vs_nq", "ip_vs_fo", "ip_vs_ovf", "ip_vs_mh",
	// netfilter: conntrack, NAT, nftables and the expressions we use
	"nf_conntrack", "nf_nat", "nf_tables", "nft_chain_nat", "nft_nat", "nft_masq", "nft_ct",
	"nft_numgen", "nft_hash", "nft_limit", "nft_reject_inet", "nft_fib_inet", "nf_conntrack_netlink",
	// links
	"bonding", "8021q", "veth", "dummy", "ipip", "ip6_tunnel", "tun",
	// NICs
	"virtio_pci", "virtio_net", "e1000e", "igb", "ixgbe", "i40e", "ice", "mlx5_core", "bnxt_en",
	// block devices and filesystems for the USB image's config partition
	// (init/boot/configpart.go): USB sticks (xHCI/EHCI, usb-storage, UAS),
	// SATA/AHCI, NVMe, virtio; FAT with the code pages and character sets
	// vfat asks for (the Debian kernel defaults to cp437 and ascii; utf8 for
	// iocharset=utf8). nls_iso8859-1 is left out: vfat never asks for it.
	"xhci_pci", "ehci_pci", "usb_storage", "uas", "sd_mod", "ahci", "nvme", "virtio_blk", "virtio_scsi",
	"vfat", "nls_cp437", "nls_ascii", "nls_utf8",
}

// Optional are loaded when the kernel has them (newer kernels only).
var Optional = []string{
	"ip_vs_twos", // Linux ≥ 6.8
}
