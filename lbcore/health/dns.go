package health

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
)

// The dns check asks one question over UDP (recursion desired, class IN)
// and passes when the member answers it with NOERROR and at least one
// record of the asked type, holding every expect_answers address. It is a
// small hand-written client: one query, one answer, no EDNS and no retry
// over TCP (a truncated answer is judged on what it holds).

const (
	dnsClassIN  = 1
	dnsTypeA    = 1
	dnsTypeAAAA = 28
)

type dnsChecker struct {
	*base
	qname  string // with the final dot
	qtype  uint16
	tname  config.DNSType
	expect []netip.Addr
}

func newDNSChecker(b *base, m config.Monitor) Checker {
	c := &dnsChecker{base: b, qname: strings.TrimSuffix(m.Query, ".") + ".", qtype: config.DNSTypes[m.QType], tname: m.QType}
	for _, a := range m.ExpectAnswers {
		c.expect = append(c.expect, a.Unmap())
	}
	return c
}

func (c *dnsChecker) Check(ctx context.Context, t Target) Result {
	return c.run(ctx, func(ctx context.Context) (string, error) {
		addr, err := c.addr(t)
		if err != nil {
			return "", &checkFailure{err.Error()}
		}
		conn, err := c.dialUDP(ctx, addr)
		if err != nil {
			return "", err
		}
		defer conn.Close()
		id := uint16(rand.Uint32())
		if _, err := conn.Write(dnsQuery(id, c.qname, c.qtype)); err != nil {
			return "", inPhase("send query", err)
		}
		buf := make([]byte, maxDatagram)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return "", inPhase("answer", err)
			}
			ans, err := parseDNSAnswer(buf[:n], id, c.qname, c.qtype)
			if errors.Is(err, errNotOurs) {
				continue // a late answer to an earlier query, or noise
			}
			if err != nil {
				return "", failf("bad DNS answer: %v", err)
			}
			return c.judge(ans)
		}
	})
}

func (c *dnsChecker) judge(ans *dnsAnswer) (string, error) {
	if ans.rcode != 0 {
		return "", failf("DNS %s", rcodeName(ans.rcode))
	}
	if ans.matching == 0 {
		return "", failf("DNS NOERROR but no %s record for %s", c.tname, c.qname)
	}
	for _, want := range c.expect {
		found := false
		for _, a := range ans.addrs {
			if a == want {
				found = true
				break
			}
		}
		if !found {
			return "", failf("DNS answer lacks %s (has %v)", want, ans.addrs)
		}
	}
	return fmt.Sprintf("DNS NOERROR, %d %s", ans.matching, c.tname), nil
}

// dnsQuery is a query message: header (id, RD, one question) and the
// question.
func dnsQuery(id uint16, name string, qtype uint16) []byte {
	b := make([]byte, 12, 12+len(name)+6)
	binary.BigEndian.PutUint16(b[0:], id)
	binary.BigEndian.PutUint16(b[2:], 0x0100) // RD
	binary.BigEndian.PutUint16(b[4:], 1)      // QDCOUNT
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		b = append(b, byte(len(label)))
		b = append(b, label...)
	}
	b = append(b, 0)
	b = binary.BigEndian.AppendUint16(b, qtype)
	return binary.BigEndian.AppendUint16(b, dnsClassIN)
}

// dnsAnswer is what the check needs from a response.
type dnsAnswer struct {
	rcode    int
	matching int          // answer records of the asked type
	addrs    []netip.Addr // A and AAAA answer records
}

var errNotOurs = errors.New("not an answer to this query")

// parseDNSAnswer reads a response to the query (id, qname, qtype): the
// header, the echoed question and the answer section (names may be
// compressed). Anything else in the message is not read.
func parseDNSAnswer(msg []byte, id uint16, qname string, qtype uint16) (*dnsAnswer, error) {
	if len(msg) < 12 {
		return nil, errNotOurs
	}
	flags := binary.BigEndian.Uint16(msg[2:])
	if binary.BigEndian.Uint16(msg[0:]) != id || flags&0x8000 == 0 {
		return nil, errNotOurs
	}
	ans := &dnsAnswer{rcode: int(flags & 0x000f)}
	qd, an := binary.BigEndian.Uint16(msg[4:]), binary.BigEndian.Uint16(msg[6:])
	off := 12
	if qd != 1 {
		if qd == 0 && ans.rcode != 0 {
			return ans, nil // some servers drop the question from an error
		}
		return nil, fmt.Errorf("%d questions in the answer, want 1", qd)
	}
	name, off, err := readDNSName(msg, off)
	if err != nil {
		return nil, fmt.Errorf("question: %w", err)
	}
	if off+4 > len(msg) {
		return nil, errors.New("question: truncated")
	}
	if !strings.EqualFold(name, qname) || binary.BigEndian.Uint16(msg[off:]) != qtype {
		return nil, errNotOurs
	}
	off += 4
	for i := 0; i < int(an); i++ {
		if _, off, err = readDNSName(msg, off); err != nil {
			return nil, fmt.Errorf("answer %d: %w", i+1, err)
		}
		if off+10 > len(msg) {
			return nil, fmt.Errorf("answer %d: truncated", i+1)
		}
		typ, class := binary.BigEndian.Uint16(msg[off:]), binary.BigEndian.Uint16(msg[off+2:])
		rdlen := int(binary.BigEndian.Uint16(msg[off+8:]))
		off += 10
		if off+rdlen > len(msg) {
			return nil, fmt.Errorf("answer %d: record data truncated", i+1)
		}
		rdata := msg[off : off+rdlen]
		off += rdlen
		if class != dnsClassIN {
			continue
		}
		if typ == qtype {
			ans.matching++
		}
		switch {
		case typ == dnsTypeA && rdlen == 4:
			ans.addrs = append(ans.addrs, netip.AddrFrom4([4]byte(rdata)))
		case typ == dnsTypeAAAA && rdlen == 16:
			ans.addrs = append(ans.addrs, netip.AddrFrom16([16]byte(rdata)))
		}
	}
	return ans, nil
}

// readDNSName reads a possibly compressed name at off; it returns the name
// with a final dot and the offset after it in msg.
func readDNSName(msg []byte, off int) (string, int, error) {
	var sb strings.Builder
	end := -1 // where the name ends in place, once a pointer was followed
	for jumps := 0; ; {
		if off >= len(msg) {
			return "", 0, errors.New("name runs past the message")
		}
		l := int(msg[off])
		switch {
		case l == 0:
			if end < 0 {
				end = off + 1
			}
			if sb.Len() == 0 {
				sb.WriteByte('.')
			}
			return sb.String(), end, nil
		case l&0xc0 == 0xc0:
			if off+1 >= len(msg) {
				return "", 0, errors.New("name pointer truncated")
			}
			if jumps++; jumps > 32 {
				return "", 0, errors.New("name pointer loop")
			}
			if end < 0 {
				end = off + 2
			}
			off = int(binary.BigEndian.Uint16(msg[off:]) & 0x3fff)
		case l&0xc0 != 0:
			return "", 0, fmt.Errorf("bad label length byte %#x", l)
		default:
			if off+1+l > len(msg) {
				return "", 0, errors.New("label runs past the message")
			}
			sb.Write(msg[off+1 : off+1+l])
			sb.WriteByte('.')
			off += 1 + l
		}
	}
}

func rcodeName(rc int) string {
	switch rc {
	case 1:
		return "FORMERR"
	case 2:
		return "SERVFAIL"
	case 3:
		return "NXDOMAIN"
	case 4:
		return "NOTIMP"
	case 5:
		return "REFUSED"
	}
	return fmt.Sprintf("RCODE %d", rc)
}
