package cfgpeer

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
)

// Whatever arrives on the sync port, reading it neither panics nor
// allocates past MaxFrame, and only a frame sealed under the key from a
// configured peer to this node is accepted.
func FuzzRead(f *testing.F) {
	self, peer := netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.1")
	now := time.Unix(1_800_000_000, 0)
	sender := newCodec(key, peer, nil, func() time.Time { return now })
	good, _, _ := sender.seal(Message{Kind: KindPrepare, Txn: "t", Generation: 1, Hash: "h", Config: []byte("pools: {}\n")}, self)
	f.Add(good)
	f.Add(good[:20])
	f.Add(binary.BigEndian.AppendUint32(nil, MaxFrame+1))
	f.Add([]byte{0, 0, 0, 2, 1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		c := newCodec(key, self, []netip.Addr{peer}, func() time.Time { return now })
		m, err := c.read(bytes.NewReader(b), peer)
		if err != nil {
			return
		}
		if len(b) < 4+macLen || !bytes.Equal(hmacOf(key, b[4+macLen:4+macLen+int(binary.BigEndian.Uint32(b))]), b[4:4+macLen]) {
			t.Fatalf("accepted a frame without a valid HMAC: %+v", m)
		}
		if m.From != peer || m.To != self {
			t.Fatalf("accepted a message from %s to %s", m.From, m.To)
		}
	})
}
