package ipvsnl

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// The expected bytes below are written out by hand from the kernel's
// layout: struct genlmsghdr {cmd, version, reserved u16}, then struct
// nlattr {len u16, type u16} in host order, data padded to 4 bytes.
func requireLittleEndian(t testing.TB) {
	t.Helper()
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("expected bytes are written for a little-endian host")
	}
}

func TestStartMessageByteLayout(t *testing.T) {
	requireLittleEndian(t)
	got, err := StartMessage(Daemon{
		State: Master, Interface: "lbfo", SyncID: 7, MaxLen: 1472,
		Group: netip.MustParseAddr("224.0.0.81"), Port: 8848, TTL: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{
		9, 1, 0, 0, // IPVS_CMD_NEW_DAEMON, version 1
		64, 0, 3, 0x80, // IPVS_CMD_ATTR_DAEMON | NLA_F_NESTED, 4+60 bytes
		8, 0, 1, 0, 1, 0, 0, 0, // STATE = master
		9, 0, 2, 0, 'l', 'b', 'f', 'o', 0, 0, 0, 0, // MCAST_IFN "lbfo\0" + pad
		8, 0, 3, 0, 7, 0, 0, 0, // SYNC_ID 7
		6, 0, 4, 0, 0xc0, 0x05, 0, 0, // SYNC_MAXLEN 1472 + pad
		8, 0, 5, 0, 224, 0, 0, 81, // MCAST_GROUP, network order
		6, 0, 7, 0, 0x90, 0x22, 0, 0, // MCAST_PORT 8848, host order + pad
		5, 0, 8, 0, 1, 0, 0, 0, // MCAST_TTL 1 + pad
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("NEW_DAEMON payload\n got % x\nwant % x", got, want)
	}
}

func TestStartMessageLeavesDefaultsToTheKernel(t *testing.T) {
	requireLittleEndian(t)
	got, err := StartMessage(Daemon{State: Backup, Interface: "eth0", SyncID: 200})
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{
		9, 1, 0, 0,
		32, 0, 3, 0x80,
		8, 0, 1, 0, 2, 0, 0, 0, // backup
		9, 0, 2, 0, 'e', 't', 'h', '0', 0, 0, 0, 0,
		8, 0, 3, 0, 200, 0, 0, 0,
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("NEW_DAEMON payload\n got % x\nwant % x", got, want)
	}
}

func TestStartMessageIPv6Group(t *testing.T) {
	requireLittleEndian(t)
	got, err := StartMessage(Daemon{State: Master, Interface: "e", Group: netip.MustParseAddr("ff02::81")})
	if err != nil {
		t.Fatal(err)
	}
	grp := []byte{20, 0, 6, 0, 0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x81}
	if !bytes.Contains(got, grp) {
		t.Fatalf("no MCAST_GROUP6 attribute % x in % x", grp, got)
	}
	if bytes.Contains(got, []byte{8, 0, 5, 0}) {
		t.Fatalf("IPv6 group also sent as MCAST_GROUP: % x", got)
	}
}

func TestStopAndListMessages(t *testing.T) {
	requireLittleEndian(t)
	got, err := StopMessage(Backup)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{10, 1, 0, 0, 12, 0, 3, 0x80, 8, 0, 1, 0, 2, 0, 0, 0}
	if !bytes.Equal(got, want) {
		t.Fatalf("DEL_DAEMON payload\n got % x\nwant % x", got, want)
	}
	if got, want := ListMessage(), []byte{11, 1, 0, 0}; !bytes.Equal(got, want) {
		t.Fatalf("GET_DAEMON payload % x, want % x", got, want)
	}
	if _, err := StopMessage(3); err == nil || !strings.Contains(err.Error(), "state 3") {
		t.Fatalf("StopMessage(3): %v, want an error naming state 3", err)
	}
}

func TestValidateNamesTheField(t *testing.T) {
	ok := Daemon{State: Master, Interface: "lbfo", SyncID: 1}
	for _, c := range []struct {
		name string
		mod  func(*Daemon)
		want string
	}{
		{"state", func(d *Daemon) { d.State = 0 }, "state 0"},
		{"no interface", func(d *Daemon) { d.Interface = "" }, "no interface"},
		{"long interface", func(d *Daemon) { d.Interface = "abcdefghijklmnop" }, "longer than 15"},
		{"slash", func(d *Daemon) { d.Interface = "a/b" }, `contains '/'`},
		{"unicast group", func(d *Daemon) { d.Group = netip.MustParseAddr("192.0.2.1") }, "not a multicast"},
		{"mapped group", func(d *Daemon) { d.Group = netip.MustParseAddr("::ffff:224.0.0.81") }, "give IPv4 groups as IPv4"},
	} {
		d := ok
		c.mod(&d)
		_, err := StartMessage(d)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
	}
	if _, err := StartMessage(ok); err != nil {
		t.Fatalf("valid daemon rejected: %v", err)
	}
}

// kernelReply is a GET_DAEMON dump message laid out as
// ip_vs_genl_fill_daemon writes it (state, ifn, syncid, maxlen, port,
// ttl, then the group).
func kernelReply(state uint32, ifn string, syncID uint32, group []byte) []byte {
	var in []byte
	in = appendAttr(in, daemonAttrState, u32(state))
	in = appendAttr(in, daemonAttrMcastIfn, append([]byte(ifn), 0))
	in = appendAttr(in, daemonAttrSyncID, u32(syncID))
	in = appendAttr(in, daemonAttrSyncMaxLen, u16(1472))
	in = appendAttr(in, daemonAttrMcastPort, u16(8848))
	in = appendAttr(in, daemonAttrMcastTTL, []byte{1})
	if len(group) == 4 {
		in = appendAttr(in, daemonAttrMcastGroup, group)
	} else {
		in = appendAttr(in, daemonAttrMcastGrp6, group)
	}
	return appendAttr([]byte{cmdNewDaemon, 1, 0, 0}, cmdAttrDaemon|nlaFNested, in)
}

func TestParseDaemonReply(t *testing.T) {
	d, err := ParseDaemon(kernelReply(2, "lbfo", 42, []byte{224, 0, 0, 81}))
	if err != nil {
		t.Fatal(err)
	}
	want := Daemon{State: Backup, Interface: "lbfo", SyncID: 42, MaxLen: 1472, Group: DefaultGroup, Port: 8848, TTL: 1}
	if d != want {
		t.Fatalf("parsed %+v, want %+v", d, want)
	}
	g6 := netip.MustParseAddr("ff02::81").As16()
	d, err = ParseDaemon(kernelReply(1, "bond0", 1, g6[:]))
	if err != nil {
		t.Fatal(err)
	}
	if d.State != Master || d.Group != netip.MustParseAddr("ff02::81") {
		t.Fatalf("parsed %+v", d)
	}
	// Round trip: what StartMessage sends, with the command swapped to the
	// reply's, parses back to the same daemon.
	in := Daemon{State: Master, Interface: "lbfo", SyncID: 9, MaxLen: 1000, Group: netip.MustParseAddr("239.1.2.3"), Port: 9000, TTL: 3}
	msg, _ := StartMessage(in)
	msg[0] = cmdNewDaemon
	if out, err := ParseDaemon(msg); err != nil || out != in {
		t.Fatalf("round trip: %+v, %v; want %+v", out, err, in)
	}
}

func TestParseDaemonRejectsMalformed(t *testing.T) {
	good := kernelReply(1, "lbfo", 3, []byte{224, 0, 0, 81})
	// Every truncation either parses (only when it cuts trailing padding
	// or whole optional attributes) or is an error; none panics.
	for n := 0; n < len(good); n++ {
		_, _ = ParseDaemon(good[:n])
	}
	cases := []struct {
		name string
		msg  []byte
		want string
	}{
		{"short", []byte{11, 1}, "shorter than a generic netlink header"},
		{"wrong command", append([]byte{5}, good[1:]...), "command 5"},
		{"no daemon attr", []byte{9, 1, 0, 0}, "no IPVS_CMD_ATTR_DAEMON"},
		{"length past end", append(append([]byte{}, good[:4]...), 0xff, 0, 3, 0x80), "runs past the end"},
		{"length below header", append(append([]byte{}, good[:4]...), 2, 0, 3, 0x80), "shorter than its header"},
		{"no state", appendAttr([]byte{9, 1, 0, 0}, cmdAttrDaemon, appendAttr(nil, daemonAttrSyncID, u32(1))), "no state"},
		{"bad state", appendAttr([]byte{9, 1, 0, 0}, cmdAttrDaemon, appendAttr(nil, daemonAttrState, u32(7))), "state 7"},
		{"short state", appendAttr([]byte{9, 1, 0, 0}, cmdAttrDaemon, appendAttr(nil, daemonAttrState, []byte{1, 0})), "state: 2 bytes"},
		{"big sync id", appendAttr([]byte{9, 1, 0, 0}, cmdAttrDaemon, appendAttr(appendAttr(nil, daemonAttrState, u32(1)), daemonAttrSyncID, u32(256))), "sync id 256"},
		{"short group", appendAttr([]byte{9, 1, 0, 0}, cmdAttrDaemon, appendAttr(appendAttr(nil, daemonAttrState, u32(1)), daemonAttrMcastGroup, []byte{224, 0})), "mcast group: 2 bytes"},
		{"long ttl", appendAttr([]byte{9, 1, 0, 0}, cmdAttrDaemon, appendAttr(appendAttr(nil, daemonAttrState, u32(1)), daemonAttrMcastTTL, u16(1))), "mcast ttl: 2 bytes"},
	}
	for _, c := range cases {
		_, err := ParseDaemon(c.msg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
	}
}

func TestParseAttrsBounded(t *testing.T) {
	// 1025 empty attributes: more than any kernel reply, refused.
	b := bytes.Repeat([]byte{4, 0, 1, 0}, maxAttrCount+1)
	if _, err := parseAttrs(b); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("parseAttrs(%d attrs): %v", maxAttrCount+1, err)
	}
	if a, err := parseAttrs(b[:4*maxAttrCount]); err != nil || len(a) != maxAttrCount {
		t.Fatalf("parseAttrs(%d attrs): %d, %v", maxAttrCount, len(a), err)
	}
}

func TestExplainKeepsTheErrno(t *testing.T) {
	err := explain(errnoEEXIST, Daemon{})
	if !errors.Is(err, ErrRunning) || !errors.Is(err, errnoEEXIST) {
		t.Fatalf("explain(EEXIST) = %v: want ErrRunning wrapping EEXIST", err)
	}
	if err := explain(errnoESRCH, Daemon{}); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("explain(ESRCH) = %v: want ErrNotRunning", err)
	}
}

func TestCountConnsByOrigin(t *testing.T) {
	table := `Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Origin Expires
TCP CB00710A 9B5F CB007164 0050 C633640B 1F90 ESTABLISHED LOCAL      893
TCP CB00710A 826B CB007164 0050 C633640B 1F90 ESTABLISHED SYNC       899
UDP CB00710A 826C CB007164 0035 C633640B 0035 UDP         SYNC       299
`
	c, err := CountConns(strings.NewReader(table))
	if err != nil || c != (ConnCounts{Local: 1, Synced: 2}) {
		t.Fatalf("CountConns = %+v, %v; want 1 local, 2 synced", c, err)
	}
	for _, bad := range []struct{ table, want string }{
		{"", "no header"},
		{"Pro FromIP\nTCP X\n", "no Origin column"},
		{"Pro Origin\nTCP\n", "line 2 has 1 columns"},
		{"Pro Origin\nTCP PEER\n", `unknown origin "PEER"`},
	} {
		if _, err := CountConns(strings.NewReader(bad.table)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("CountConns(%q): %v, want %q", bad.table, err, bad.want)
		}
	}
}
