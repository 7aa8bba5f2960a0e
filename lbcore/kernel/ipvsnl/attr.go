package ipvsnl

import (
	"encoding/binary"
	"fmt"
)

// attr is one netlink attribute of a parsed message. Data aliases the
// message buffer.
type attr struct {
	Type uint16 // with NLA_F_NESTED and NLA_F_NET_BYTEORDER masked off
	Data []byte
}

const (
	attrHdrLen   = 4
	nlaTypeMask  = ^uint16(0xc000) // NLA_F_NESTED | NLA_F_NET_BYTEORDER
	maxAttrCount = 1024            // a reply carrying more is not from the kernel's IPVS code
)

func align4(n int) int { return (n + 3) &^ 3 }

// parseAttrs splits b into netlink attributes. Unlike nl.ParseRouteAttr it
// never indexes past b: a length field shorter than the header, longer
// than what is left, or too many attributes is an error naming the offset.
// Padding missing after the last attribute is accepted (the kernel always
// pads, but a truncated final pad carries no data).
func parseAttrs(b []byte) ([]attr, error) {
	var out []attr
	for off := 0; off < len(b); {
		if len(b)-off < attrHdrLen {
			return nil, fmt.Errorf("attribute at offset %d: %d trailing bytes, shorter than a header", off, len(b)-off)
		}
		l := int(binary.NativeEndian.Uint16(b[off:]))
		typ := binary.NativeEndian.Uint16(b[off+2:]) & nlaTypeMask
		if l < attrHdrLen {
			return nil, fmt.Errorf("attribute %d at offset %d: length %d is shorter than its header", typ, off, l)
		}
		if l > len(b)-off {
			return nil, fmt.Errorf("attribute %d at offset %d: length %d runs past the end (%d bytes left)", typ, off, l, len(b)-off)
		}
		if len(out) == maxAttrCount {
			return nil, fmt.Errorf("more than %d attributes", maxAttrCount)
		}
		out = append(out, attr{Type: typ, Data: b[off+attrHdrLen : off+l]})
		off += align4(l)
	}
	return out, nil
}

func attrU8(a attr, name string) (uint8, error) {
	if len(a.Data) != 1 {
		return 0, fmt.Errorf("%s: %d bytes, want 1", name, len(a.Data))
	}
	return a.Data[0], nil
}

func attrU16(a attr, name string) (uint16, error) {
	if len(a.Data) != 2 {
		return 0, fmt.Errorf("%s: %d bytes, want 2", name, len(a.Data))
	}
	return binary.NativeEndian.Uint16(a.Data), nil
}

func attrU32(a attr, name string) (uint32, error) {
	if len(a.Data) != 4 {
		return 0, fmt.Errorf("%s: %d bytes, want 4", name, len(a.Data))
	}
	return binary.NativeEndian.Uint32(a.Data), nil
}

// attrString reads a NUL-terminated string (a missing NUL is accepted: the
// string then ends with the attribute).
func attrString(a attr) string {
	for i, c := range a.Data {
		if c == 0 {
			return string(a.Data[:i])
		}
	}
	return string(a.Data)
}
