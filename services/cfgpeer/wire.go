package cfgpeer

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Wire format: one frame per message on a TCP connection,
//
//	length (4 bytes, big endian, of the payload) | HMAC-SHA256(key, payload) (32 bytes) | payload (JSON Message)
//
// A connection carries one request and its reply.

// MaxFrame bounds a payload: a 1 MiB config in base64 plus the envelope.
const MaxFrame = 2 << 20

// MaxSkew is how far a message's timestamp may be from the receiver's
// clock; older messages are stale, and nonces are remembered this long.
const MaxSkew = 30 * time.Second

// maxNonces bounds the replay cache (a peer sends a few messages a
// second; a window of MaxSkew holds far fewer).
const maxNonces = 4096

const macLen = sha256.Size

// Kind is what a message asks for.
type Kind string

// Message kinds. Every request gets a KindReply (OK, or Error).
const (
	KindHello   Kind = "hello"   // my generation and hash; reply: yours
	KindPrepare Kind = "prepare" // validate and plan Config (cluster sections); hold it
	KindCommit  Kind = "commit"  // apply the prepared Txn
	KindAbort   Kind = "abort"   // drop the prepared Txn
	KindUndo    Kind = "undo"    // go back from the committed Txn
	KindFetch   Kind = "fetch"   // reply: your running cluster sections
	KindReply   Kind = "reply"
)

// Message is one request or reply.
type Message struct {
	Kind  Kind       `json:"kind"`
	From  netip.Addr `json:"from"`
	To    netip.Addr `json:"to"`
	Time  int64      `json:"time"` // unix nanoseconds
	Nonce string     `json:"nonce"`
	// Re is the request's nonce, in a reply.
	Re         string `json:"re,omitempty"`
	Txn        string `json:"txn,omitempty"`
	Generation uint64 `json:"generation,omitempty"`
	Hash       string `json:"hash,omitempty"`
	Config     []byte `json:"config,omitempty"`
	OK         bool   `json:"ok,omitempty"`
	Error      string `json:"error,omitempty"`
}

// Drop reasons, counted per reason.
const (
	DropOversized       = "oversized"
	DropMalformed       = "malformed"
	DropUnauthenticated = "unauthenticated"
	DropStale           = "stale"
	DropReplayed        = "replayed"
	DropPeer            = "not_a_peer"
)

var dropReasons = []string{DropOversized, DropMalformed, DropUnauthenticated, DropStale, DropReplayed, DropPeer}

// dropError is a message refused for reason.
type dropError struct {
	reason string
	err    error
}

func (e *dropError) Error() string { return e.reason + ": " + e.err.Error() }

func drop(reason string, format string, a ...any) error {
	return &dropError{reason: reason, err: fmt.Errorf(format, a...)}
}

// DropReason is the reason a message was dropped ("" for other errors).
func DropReason(err error) string {
	var d *dropError
	if errors.As(err, &d) {
		return d.reason
	}
	return ""
}

// codec seals and opens frames for one node: its key, address and peers,
// a bounded replay cache and the drop counters.
type codec struct {
	key   []byte
	self  netip.Addr
	peers map[netip.Addr]bool
	now   func() time.Time

	mu     sync.Mutex
	nonces map[string]time.Time // nonce → when it stops mattering

	drops map[string]*atomic.Uint64
}

func newCodec(key []byte, self netip.Addr, peers []netip.Addr, now func() time.Time) *codec {
	c := &codec{key: key, self: self, peers: map[netip.Addr]bool{}, now: now, nonces: map[string]time.Time{}, drops: map[string]*atomic.Uint64{}}
	for _, p := range peers {
		c.peers[p] = true
	}
	for _, r := range dropReasons {
		c.drops[r] = new(atomic.Uint64)
	}
	return c
}

func newNonce() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic("cfgpeer: no randomness: " + err.Error()) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}

// seal stamps m (from this node to to) and frames it; it returns the
// frame and the message's nonce.
func (c *codec) seal(m Message, to netip.Addr) ([]byte, string, error) {
	m.From, m.To, m.Time, m.Nonce = c.self, to, c.now().UnixNano(), newNonce()
	payload, err := json.Marshal(m)
	if err != nil {
		return nil, "", fmt.Errorf("encoding a %s message: %w", m.Kind, err)
	}
	if len(payload) > MaxFrame {
		return nil, "", fmt.Errorf("a %s message of %d bytes is larger than %d", m.Kind, len(payload), MaxFrame)
	}
	mac := hmac.New(sha256.New, c.key)
	mac.Write(payload)
	out := make([]byte, 4, 4+macLen+len(payload))
	binary.BigEndian.PutUint32(out, uint32(len(payload)))
	out = mac.Sum(out)
	return append(out, payload...), m.Nonce, nil
}

// read reads one frame from r and opens it; src is the sending host's
// address as the socket sees it. Errors from a message that arrived but
// is refused are dropErrors, counted.
func (c *codec) read(r io.Reader, src netip.Addr) (Message, error) {
	m, err := c.readFrame(r, src)
	if reason := DropReason(err); reason != "" {
		c.drops[reason].Add(1)
	}
	return m, err
}

func (c *codec) readFrame(r io.Reader, src netip.Addr) (Message, error) {
	var hdr [4 + macLen]byte
	if _, err := io.ReadFull(r, hdr[:4]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return Message{}, drop(DropMalformed, "frame header cut short")
		}
		return Message{}, fmt.Errorf("reading a frame: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n > MaxFrame {
		return Message{}, drop(DropOversized, "frame of %d bytes (at most %d)", n, MaxFrame)
	}
	if _, err := io.ReadFull(r, hdr[4:]); err != nil {
		return Message{}, drop(DropMalformed, "frame cut short: %v", err)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return Message{}, drop(DropMalformed, "frame cut short: %v", err)
	}
	mac := hmac.New(sha256.New, c.key)
	mac.Write(payload)
	if !hmac.Equal(mac.Sum(nil), hdr[4:]) {
		return Message{}, drop(DropUnauthenticated, "bad HMAC from %s (wrong or missing vrrp.sync_key?)", src)
	}
	var m Message
	if err := json.Unmarshal(payload, &m); err != nil {
		return Message{}, drop(DropMalformed, "from %s: %v", src, err)
	}
	if m.Kind == "" || m.Nonce == "" || !m.From.IsValid() {
		return Message{}, drop(DropMalformed, "from %s: kind, nonce or sender missing", src)
	}
	if !c.peers[m.From.Unmap()] || m.From.Unmap() != src.Unmap() {
		return Message{}, drop(DropPeer, "message from %s claiming %s: not a configured peer", src, m.From)
	}
	if m.To.Unmap() != c.self.Unmap() {
		return Message{}, drop(DropPeer, "message from %s for %s, not this node (%s)", src, m.To, c.self)
	}
	now := c.now()
	t := time.Unix(0, m.Time)
	if d := now.Sub(t); d > MaxSkew || d < -MaxSkew {
		return Message{}, drop(DropStale, "from %s, %s old (clocks more than %s apart?)", src, d.Round(time.Millisecond), MaxSkew)
	}
	if err := c.remember(m.From.String()+"/"+m.Nonce, now); err != nil {
		return Message{}, err
	}
	return m, nil
}

// remember records a nonce; a nonce seen before is a replay. Entries are
// kept twice MaxSkew (a message that old is stale anyway); when the cache
// is full of live entries the message is refused rather than the cache
// grown.
func (c *codec) remember(id string, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, seen := c.nonces[id]; seen {
		return drop(DropReplayed, "nonce %s seen before", id)
	}
	if len(c.nonces) >= maxNonces {
		for k, until := range c.nonces {
			if now.After(until) {
				delete(c.nonces, k)
			}
		}
		if len(c.nonces) >= maxNonces {
			return drop(DropReplayed, "replay cache full (%d messages in %s)", maxNonces, 2*MaxSkew)
		}
	}
	c.nonces[id] = now.Add(2 * MaxSkew)
	return nil
}

// dropped returns the drop counters.
func (c *codec) dropped() map[string]uint64 {
	out := make(map[string]uint64, len(c.drops))
	for r, n := range c.drops {
		out[r] = n.Load()
	}
	return out
}

func hmacOf(key, payload []byte) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write(payload)
	return mac.Sum(nil)
}
