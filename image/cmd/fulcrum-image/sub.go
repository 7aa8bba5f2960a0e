package main

import (
	"fmt"
	"os"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
)

// subcommand returns the subcommand that runs instead of a build when named
// as the first argument (it returns the exit status), or nil.
func subcommand(name string) func(args []string) int {
	switch name {
	case "check-config":
		return checkConfig
	}
	return nil
}

// checkConfig validates config files with the appliance's own loader and
// prints every problem as `field.path (line N): reason`.
func checkConfig(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: fulcrum-image check-config FILE...")
		return 2
	}
	status := 0
	for _, path := range args {
		if err := config.Check(os.Stdout, path); err != nil {
			fmt.Fprintf(os.Stderr, "check-config: %v\n", err)
			status = 1
		}
	}
	return status
}
