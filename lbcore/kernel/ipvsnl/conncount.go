package ipvsnl

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
)

// ConnCounts counts the IPVS connection entries of a namespace by origin:
// Local entries carry traffic through this node, Synced ones were
// installed by a backup daemon from the peer's sync messages.
type ConnCounts struct {
	Local  uint64 `json:"local"`
	Synced uint64 `json:"synced"`
}

// ConnSyncPath is the kernel's table of connections with their origin
// (ip_vs_conn_sync_seq_show), per network namespace.
const ConnSyncPath = "/proc/net/ip_vs_conn_sync"

// maxConnLines bounds a count: the appliance sizes for a few million
// entries; beyond that the count stops and says so.
const maxConnLines = 16 << 20

// ReadConnCounts counts the entries of the caller's namespace (the
// thread's when path is under /proc/thread-self).
func ReadConnCounts(path string) (ConnCounts, error) {
	f, err := os.Open(path)
	if err != nil {
		return ConnCounts{}, fmt.Errorf("ipvs connection origins: %w", err)
	}
	defer f.Close()
	return CountConns(f)
}

// CountConns counts the lines of an ip_vs_conn_sync table by their Origin
// column (LOCAL or SYNC). The column is found from the header, so a
// kernel that adds columns still counts right; an unknown origin is an
// error naming it.
func CountConns(r io.Reader) (ConnCounts, error) {
	var c ConnCounts
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), 4096)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return c, fmt.Errorf("ipvs connection origins: %w", err)
		}
		return c, fmt.Errorf("ipvs connection origins: empty table, no header")
	}
	col := -1
	for i, f := range strings.Fields(sc.Text()) {
		if f == "Origin" {
			col = i
		}
	}
	if col < 0 {
		return c, fmt.Errorf("ipvs connection origins: no Origin column in header %q", sc.Text())
	}
	for n := 0; sc.Scan(); n++ {
		if n == maxConnLines {
			return c, fmt.Errorf("ipvs connection origins: more than %d entries, count stopped", maxConnLines)
		}
		f := bytes.Fields(sc.Bytes())
		if len(f) == 0 {
			continue
		}
		if len(f) <= col {
			return c, fmt.Errorf("ipvs connection origins: line %d has %d columns, Origin is column %d", n+2, len(f), col+1)
		}
		switch {
		case bytes.EqualFold(f[col], []byte("LOCAL")):
			c.Local++
		case bytes.EqualFold(f[col], []byte("SYNC")):
			c.Synced++
		default:
			return c, fmt.Errorf("ipvs connection origins: line %d: unknown origin %q", n+2, f[col])
		}
	}
	if err := sc.Err(); err != nil {
		return c, fmt.Errorf("ipvs connection origins: %w", err)
	}
	return c, nil
}
