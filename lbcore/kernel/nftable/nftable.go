// Package nftable replaces one nftables table in a single batch and reads
// it back as the kernel reports it: the shared part of the managers that
// own a table (nat, filter), whose stage Undo puts back what was read.
package nftable

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Snapshot is a table's content: named sets and maps with their elements
// (rules look them up by name), chains (those others jump to first) and
// the rules of each, by chain name. A nil *Snapshot means "no table".
type Snapshot struct {
	Sets   []Set
	Chains []*nftables.Chain
	Rules  map[string][]*nftables.Rule
}

// Set is a named set or map of the table and its elements.
type Set struct {
	Set      *nftables.Set
	Elements []nftables.SetElement
}

// Table is one table (name and family) in the namespace open at NsFd (-1:
// the current namespace; the fd must stay open while Table is used).
type Table struct {
	NsFd   int
	Name   string
	Family nftables.TableFamily
}

func (t Table) String() string {
	if t.Family == nftables.TableFamilyINet {
		return "inet " + t.Name
	}
	return t.Name
}

// sockBuffer is the netlink send and receive buffer of a table
// replacement: the whole batch goes out in one sendmsg, and with the
// defaults (~208 KiB) the kernel refused a table of 1000 FullNAT virtual
// servers' rules with EMSGSIZE, and a bigger batch's acknowledgements (one
// per message) overflowed the receive side (ENOBUFS). SO_SNDBUFFORCE and
// SO_RCVBUFFORCE (the appliance runs with CAP_NET_ADMIN) lift the
// wmem_max/rmem_max caps; the kernel only charges what is queued.
const sockBuffer = 32 << 20

func bigBuffers(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil // not a real socket (tests): keep the defaults
	}
	var sErr, rErr error
	if err := rc.Control(func(fd uintptr) {
		sErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sockBuffer)
		rErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, sockBuffer)
	}); err != nil {
		return nil
	}
	// Without CAP_NET_ADMIN: as much as wmem_max/rmem_max allow.
	if sErr != nil {
		_ = c.SetWriteBuffer(sockBuffer)
	}
	if rErr != nil {
		_ = c.SetReadBuffer(sockBuffer)
	}
	return nil
}

// elemChunk is how many set elements go in one netlink message: a
// message's element list is one attribute of at most 64 KiB, and an element
// with a key, a value and a comment takes up to ~200 bytes.
const elemChunk = 256

// Conn connects to nftables in t's namespace.
func (t Table) Conn() (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.WithSockOptions(bigBuffers)}
	if t.NsFd >= 0 {
		opts = append(opts, nftables.WithNetNSFd(t.NsFd))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables: connect: %w", err)
	}
	return c, nil
}

// Install replaces the table with s (nil: removes it) in one batch.
func (t Table) Install(s *Snapshot) error {
	c, err := t.Conn()
	if err != nil {
		return err
	}
	tbl := &nftables.Table{Name: t.Name, Family: t.Family}
	// add+delete(+add): replaces the table whether it existed or not, in the
	// same transaction as the new content.
	c.AddTable(tbl)
	c.DelTable(tbl)
	if s != nil {
		c.AddTable(tbl)
		for _, st := range s.Sets {
			ns := *st.Set
			ns.Table, ns.ID = tbl, 0
			// Elements go in messages of at most elemChunk: one message
			// carries them in a single netlink attribute, whose length is
			// 16 bits (1000 commented elements overflowed it and the
			// kernel got a cut list).
			first := st.Elements[:min(len(st.Elements), elemChunk)]
			if err := c.AddSet(&ns, first); err != nil {
				return fmt.Errorf("nftables: set %s of table %s: %w", ns.Name, t, err)
			}
			for i := len(first); i < len(st.Elements); i += elemChunk {
				if err := c.SetAddElements(&ns, st.Elements[i:min(len(st.Elements), i+elemChunk)]); err != nil {
					return fmt.Errorf("nftables: elements of set %s of table %s: %w", ns.Name, t, err)
				}
			}
		}
		for _, ch := range s.Chains {
			c.AddChain(&nftables.Chain{Name: ch.Name, Table: tbl, Type: ch.Type, Hooknum: ch.Hooknum, Priority: ch.Priority, Policy: ch.Policy})
		}
		for _, ch := range s.Chains {
			for _, r := range s.Rules[ch.Name] {
				c.AddRule(&nftables.Rule{Table: tbl, Chain: &nftables.Chain{Name: ch.Name, Table: tbl}, Exprs: r.Exprs, UserData: r.UserData})
			}
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: replace table %s: %w", t, err)
	}
	return nil
}

// Read returns what the kernel's table holds now (nil: no table), regular
// chains before base chains (base chains' rules jump to them).
func (t Table) Read() (*Snapshot, error) {
	c, err := t.Conn()
	if err != nil {
		return nil, err
	}
	tbl, err := c.ListTableOfFamily(t.Name, t.Family)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, fmt.Errorf("nftables: read table %s: %w", t, err)
	}
	chains, err := c.ListChainsOfTableFamily(t.Family)
	if err != nil {
		return nil, fmt.Errorf("nftables: list chains: %w", err)
	}
	s := &Snapshot{Rules: map[string][]*nftables.Rule{}}
	sets, err := c.GetSets(tbl)
	if err != nil {
		return nil, fmt.Errorf("nftables: list sets of %s: %w", t, err)
	}
	for _, st := range sets {
		if st.Anonymous {
			continue // part of the rule that uses it
		}
		elems, err := c.GetSetElements(st)
		if err != nil {
			return nil, fmt.Errorf("nftables: elements of set %s in %s: %w", st.Name, t, err)
		}
		s.Sets = append(s.Sets, Set{Set: st, Elements: elems})
	}
	var base, regular []*nftables.Chain
	for _, ch := range chains {
		if ch.Table.Name != t.Name {
			continue
		}
		if ch.Hooknum != nil {
			base = append(base, ch)
		} else {
			regular = append(regular, ch)
		}
		rules, err := c.GetRules(tbl, ch)
		if err != nil {
			return nil, fmt.Errorf("nftables: list rules of %s: %w", ch.Name, err)
		}
		s.Rules[ch.Name] = rules
	}
	s.Chains = append(regular, base...)
	return s, nil
}
