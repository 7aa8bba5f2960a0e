// Package nldump retries netlink dumps that the kernel interrupted.
//
// When addresses, links or rules change while the kernel is answering a
// dump, it marks the answer NLM_F_DUMP_INTR and github.com/vishvananda/netlink
// returns netlink.ErrDumpInterrupted with results that may be incomplete.
// On the appliance that happens whenever daemons change addresses at once
// (lbd adding a VIP while vrrpd or DHCP lists a link); the fix is to ask
// again.
package nldump

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
)

// Tries is how many times a dump is asked for before giving up.
const Tries = 10

// Retry runs dump until it completes without being interrupted, at most
// Tries times. Any other error is returned at once.
func Retry[T any](dump func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for range Tries {
		v, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, fmt.Errorf("interrupted %d times in a row: %w", Tries, err)
}
