// Package netboot serves the appliance's PXE tree (out/pxe) on one network
// interface: a DHCP server that hands PXE clients the right boot file, a TFTP
// server for firmware PXE ROMs, and an HTTP server for iPXE. Firmware that is
// not iPXE is chainloaded into iPXE first (undionly.kpxe for BIOS, ipxe.efi
// for UEFI); iPXE is recognised by its user class (option 77 "iPXE") or its
// option 175 and gets the boot.ipxe URL, so it never chainloads itself again.
package netboot

import (
	"bytes"
	"fmt"
	"net"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// Files the PXE tree holds for chainloading (the builder takes them from
// Debian's ipxe package) and the iPXE script it writes.
const (
	BIOSLoader = "undionly.kpxe" // iPXE for BIOS PXE ROMs (uses the ROM's UNDI driver)
	EFILoader  = "ipxe.efi"      // iPXE for UEFI PXE (x86-64)
	IPXEScript = "boot.ipxe"
)

// Client is what a DHCP request tells about the booting machine.
type Client int

const (
	NotPXE      Client = iota // an ordinary DHCP client: an address, no boot file
	BIOSPXE                   // a BIOS PXE ROM (arch 0)
	EFIPXE                    // a UEFI x86-64 PXE client (arch 6/7/9)
	IPXE                      // iPXE itself (user class "iPXE" or option 175)
	Unsupported               // a PXE client of an architecture we have no loader for
)

func (c Client) String() string {
	return [...]string{"not-pxe", "bios-pxe", "efi-pxe", "ipxe", "unsupported-arch"}[c]
}

// Classify tells which kind of client sent m.
func Classify(m *dhcpv4.DHCPv4) Client {
	if uc := m.Options.Get(dhcpv4.OptionUserClassInformation); bytes.Contains(uc, []byte("iPXE")) {
		return IPXE
	}
	if m.Options.Has(dhcpv4.OptionEtherboot) {
		return IPXE
	}
	archs := m.ClientArch()
	if len(archs) == 0 {
		if strings.HasPrefix(m.ClassIdentifier(), "PXEClient") {
			return BIOSPXE // PXE without option 93: old BIOS ROMs
		}
		return NotPXE
	}
	switch archs[0] {
	case iana.INTEL_X86PC:
		return BIOSPXE
	case iana.EFI_IA32, iana.EFI_BC, iana.EFI_X86_64:
		return EFIPXE
	}
	return Unsupported
}

// BootFile is the boot file name (option 67) for a client: a TFTP path for
// firmware PXE ROMs, an HTTP URL for iPXE; "" for clients that get none.
func BootFile(c Client, server net.IP, httpPort int) string {
	switch c {
	case BIOSPXE:
		return BIOSLoader
	case EFIPXE:
		return EFILoader
	case IPXE:
		host := server.String()
		if httpPort != 80 {
			host = fmt.Sprintf("%s:%d", host, httpPort)
		}
		return "http://" + host + "/" + IPXEScript
	}
	return ""
}
