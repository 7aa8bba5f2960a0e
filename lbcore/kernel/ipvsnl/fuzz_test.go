package ipvsnl

import (
	"net/netip"
	"syscall"
	"testing"
)

var (
	errnoEEXIST = syscall.EEXIST
	errnoESRCH  = syscall.ESRCH
)

// FuzzParseDaemon: no input makes ParseDaemon panic, and whatever it
// accepts is a valid daemon that encodes and parses back to itself.
func FuzzParseDaemon(f *testing.F) {
	f.Add(kernelReply(1, "lbfo", 3, []byte{224, 0, 0, 81}))
	g6 := netip.MustParseAddr("ff02::81").As16()
	f.Add(kernelReply(2, "bond0", 255, g6[:]))
	f.Add([]byte{9, 1, 0, 0, 4, 0, 3, 0x80})
	f.Add([]byte{9, 1, 0, 0, 0xff, 0xff, 3, 0})
	f.Fuzz(func(t *testing.T, msg []byte) {
		d, err := ParseDaemon(msg)
		if err != nil {
			return
		}
		if !d.State.Valid() {
			t.Fatalf("accepted state %d", d.State)
		}
		if d.Validate() != nil {
			return // e.g. an interface name the kernel would not send
		}
		enc, err := StartMessage(d)
		if err != nil {
			t.Fatalf("accepted %+v but cannot encode it: %v", d, err)
		}
		enc[0] = cmdNewDaemon
		back, err := ParseDaemon(enc)
		if err != nil {
			t.Fatalf("re-parse of %+v: %v", d, err)
		}
		// Zero optional fields are left out when encoding and read back as
		// zero; everything else must survive.
		if back != d {
			t.Fatalf("round trip changed %+v into %+v", d, back)
		}
	})
}
