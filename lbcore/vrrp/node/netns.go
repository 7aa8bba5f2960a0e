package node

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// inNS runs f with the calling goroutine's thread in namespace ns (or in the
// current one when ns is not open). Sockets created inside stay bound to ns.
func inNS(ns netns.NsHandle, f func() error) error {
	if !ns.IsOpen() {
		return f()
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get current netns: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns: %w", err)
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		// leave the thread locked: it dies with the goroutine instead of
		// serving others in the wrong namespace
		return fmt.Errorf("restore netns: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}
