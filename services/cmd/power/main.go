// Command power asks the appliance's init to power off or reboot cleanly
// (services stopped, filesystems synced): `power off` or `power reboot`.
package main

import (
	"fmt"
	"os"

	"github.com/fulcrum-lb/fulcrum/services/power"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: power off|reboot")
		os.Exit(2)
	}
	a, err := power.Parse(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := power.Request(a); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%s requested\n", a)
}
