package console

import (
	"bytes"
	"strings"
	"testing"

	"github.com/fulcrum-lb/fulcrum/services/localapi"
)

func TestWriteSync(t *testing.T) {
	var b bytes.Buffer
	WriteSync(&b, localapi.SyncStatus{Enabled: true, Role: "master", Interface: "failover", SyncID: 51,
		Daemons: []localapi.SyncDaemon{
			{State: "master", Interface: "failover", SyncID: 51, Group: "224.0.0.81", Port: 8848, TTL: 1, MaxLen: 1472},
			{State: "backup", Interface: "failover", SyncID: 51, Group: "224.0.0.81", Port: 8848, TTL: 1, MaxLen: 1472},
		},
		Reconciles: 4, Started: 2, ConnsLocal: 7, ConnsSynced: 3, LastError: "boom"})
	want := `role master, sync id 51 on failover
DAEMON  INTERFACE  SYNCID  GROUP       PORT  TTL  MAXLEN
master  failover   51      224.0.0.81  8848  1    1472
backup  failover   51      224.0.0.81  8848  1    1472
connections: 7 local, 3 synced from the peer
reconciles=4 started=2 stopped=0 errors=0
last error: boom
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	WriteSync(&b, localapi.SyncStatus{LastError: "no IPVS generic netlink family"})
	if !strings.Contains(b.String(), "sync: off: no IPVS generic netlink family") {
		t.Errorf("disabled: %q", b.String())
	}
}
