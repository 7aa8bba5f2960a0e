package cfgpeer

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
)

// send writes raw bytes to node b from addr and returns what came back.
func rawSend(t *testing.T, p *pair, from string, frame []byte) []byte {
	t.Helper()
	d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	conn, err := d.Dial("tcp", netip.AddrPortFrom(p.addrB, uint16(p.port)).String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	conn.Write(frame)
	if c, ok := conn.(*net.TCPConn); ok {
		c.CloseWrite()
	}
	out, _ := io.ReadAll(conn)
	return out
}

// Every kind of bad message is dropped unanswered and counted under its
// reason, and changes nothing.
func TestBadMessagesDroppedAndCounted(t *testing.T) {
	p := newPair(t, true)
	good := func(m Message) []byte {
		f, _, err := p.a.c.seal(m, p.addrB)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	prepare := Message{Kind: KindPrepare, Txn: "x", Generation: 7, Hash: hashOf([]byte("pools: {evil: 1}\n")), Config: []byte("pools: {evil: 1}\n")}

	oversized := binary.BigEndian.AppendUint32(nil, MaxFrame+1)
	oversized = append(oversized, bytes.Repeat([]byte{0}, 64)...)

	forged := good(prepare)
	forged[len(forged)-3] ^= 1 // payload changed after the HMAC

	wrongKey := func() []byte {
		c := newCodec([]byte("another-key-0123456789"), p.addrA, nil, time.Now)
		f, _, _ := c.seal(prepare, p.addrB)
		return f
	}()

	notJSON := func() []byte {
		payload := []byte("{not json")
		mac := hmacOf(key, payload)
		f := binary.BigEndian.AppendUint32(nil, uint32(len(payload)))
		f = append(f, mac...)
		return append(f, payload...)
	}()

	stale := func() []byte {
		c := newCodec(key, p.addrA, nil, func() time.Time { return time.Now().Add(-2 * MaxSkew) })
		f, _, _ := c.seal(prepare, p.addrB)
		return f
	}()

	replayed := good(Message{Kind: KindHello})

	// A message that names a peer but comes from another host.
	spoofed := good(prepare)

	cases := []struct {
		name, from, reason string
		frame              []byte
	}{
		{"oversized", "127.0.0.1", DropOversized, oversized},
		{"forged", "127.0.0.1", DropUnauthenticated, forged},
		{"wrong key", "127.0.0.1", DropUnauthenticated, wrongKey},
		{"not json", "127.0.0.1", DropMalformed, notJSON},
		{"cut short", "127.0.0.1", DropMalformed, good(prepare)[:40]},
		{"stale", "127.0.0.1", DropStale, stale},
		{"first copy", "127.0.0.1", "", replayed},
		{"replayed", "127.0.0.1", DropReplayed, replayed},
		{"from another host", "127.0.0.3", DropPeer, spoofed},
	}
	for _, c := range cases {
		before := p.b.Status().Dropped
		out := rawSend(t, p, c.from, c.frame)
		after := p.b.Status().Dropped
		if c.reason == "" {
			if len(out) == 0 {
				t.Errorf("%s: a good message got no answer", c.name)
			}
			continue
		}
		if len(out) != 0 {
			t.Errorf("%s: answered (%d bytes)", c.name, len(out))
		}
		if after[c.reason] != before[c.reason]+1 {
			t.Errorf("%s: %s count %d → %d", c.name, c.reason, before[c.reason], after[c.reason])
		}
	}
	if b := p.lb.get(); b.Generation != 0 || p.lb.commits != 0 {
		t.Errorf("a dropped message changed the config: %+v", b)
	}
}

// The replay cache stays bounded: once full of live nonces it refuses
// rather than grows.
func TestReplayCacheBounded(t *testing.T) {
	now := time.Now()
	c := newCodec(key, netip.MustParseAddr("127.0.0.2"), nil, func() time.Time { return now })
	for i := 0; i < maxNonces; i++ {
		if err := c.remember(newNonce(), now); err != nil {
			t.Fatalf("nonce %d: %v", i, err)
		}
	}
	if err := c.remember(newNonce(), now); DropReason(err) != DropReplayed {
		t.Fatalf("full cache: %v", err)
	}
	if len(c.nonces) != maxNonces {
		t.Fatalf("cache grew to %d", len(c.nonces))
	}
	// Expired entries make room.
	if err := c.remember(newNonce(), now.Add(3*MaxSkew)); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	if len(c.nonces) != 1 {
		t.Errorf("expired entries kept: %d", len(c.nonces))
	}
}

// Flooding connections do not stop the node answering its peer.
func TestFloodBounded(t *testing.T) {
	p := newPair(t, true)
	var conns []net.Conn
	for i := 0; i < 3*maxConns; i++ {
		c, err := net.Dial("tcp", netip.AddrPortFrom(p.addrB, uint16(p.port)).String())
		if err == nil {
			conns = append(conns, c)
		}
	}
	// The silent connections time out (Timeout 1 s); the peer's hello gets
	// through within a few timeouts.
	testkit.Eventually(t, 5*time.Second, 100*time.Millisecond, func() error {
		_, err := p.a.exchange(context.Background(), p.addrB, Message{Kind: KindHello})
		return err
	})
	for _, c := range conns {
		c.Close()
	}
}

func TestMessageJSONRoundTrip(t *testing.T) {
	m := Message{Kind: KindPrepare, From: netip.MustParseAddr("192.0.2.1"), Config: []byte("a: 1\n")}
	b, _ := json.Marshal(m)
	var back Message
	if err := json.Unmarshal(b, &back); err != nil || back.From != m.From || string(back.Config) != "a: 1\n" {
		t.Fatalf("%v %+v", err, back)
	}
}
