// Package cookie is the codec of the L7 persistence cookie. A cookie names
// a member opaquely (a keyed hash of the virtual server and the member, not
// its address) and carries its expiry, authenticated with HMAC-SHA256 under
// a secret both HA nodes share: either node honours the other's cookies,
// and a client cannot edit a cookie to steer itself to another member.
package cookie

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"time"
)

// IDLen is the length of a member ID.
const IDLen = 8

const macLen = 16

// encLen is the length of an encoded cookie value.
var encLen = base64.RawURLEncoding.EncodedLen(IDLen + 8 + macLen)

// ID names one member of one virtual server opaquely.
type ID [IDLen]byte

// Codec makes and checks cookies under one secret.
type Codec struct {
	key []byte
}

// New returns a codec for secret (non-empty).
func New(secret string) (*Codec, error) {
	if secret == "" {
		return nil, errors.New("cookie: empty secret")
	}
	k := sha256.Sum256([]byte("fulcrum-l7-cookie\x00" + secret))
	return &Codec{key: k[:]}, nil
}

// MemberID is the opaque ID of member (its stable spelling, e.g.
// "pool/198.51.100.11:8080") within virtual server vs.
func (c *Codec) MemberID(vs, member string) ID {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte("id\x00" + vs + "\x00" + member))
	var id ID
	copy(id[:], m.Sum(nil))
	return id
}

func (c *Codec) mac(b []byte) []byte {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte("mac\x00"))
	m.Write(b)
	return m.Sum(nil)[:macLen]
}

// Encode returns the cookie value pinning id until expires.
func (c *Codec) Encode(id ID, expires time.Time) string {
	var b [IDLen + 8 + macLen]byte
	copy(b[:], id[:])
	binary.BigEndian.PutUint64(b[IDLen:], uint64(expires.Unix()))
	copy(b[IDLen+8:], c.mac(b[:IDLen+8]))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Errors of Decode.
var (
	ErrMalformed = errors.New("cookie: malformed")
	ErrForged    = errors.New("cookie: bad signature")
	ErrExpired   = errors.New("cookie: expired")
)

// Decode checks value and returns the member ID it pins.
func (c *Codec) Decode(value string, now time.Time) (ID, error) {
	var id ID
	if len(value) != encLen {
		return id, ErrMalformed
	}
	b, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(b) != IDLen+8+macLen {
		return id, ErrMalformed
	}
	if !hmac.Equal(b[IDLen+8:], c.mac(b[:IDLen+8])) {
		return id, ErrForged
	}
	if exp := int64(binary.BigEndian.Uint64(b[IDLen:])); now.Unix() > exp {
		return id, ErrExpired
	}
	copy(id[:], b)
	return id, nil
}
