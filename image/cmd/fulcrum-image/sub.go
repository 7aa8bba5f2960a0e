package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/config/keepalived"
)

// subcommand returns the subcommand that runs instead of a build when named
// as the first argument (it returns the exit status), or nil.
func subcommand(name string) func(args []string) int {
	switch name {
	case "check-config":
		return checkConfig
	case "import-keepalived":
		return importKeepalived
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

// importKeepalived converts a keepalived.conf into Fulcrum YAML, lists what
// it could not convert and, with a base config, validates the result.
func importKeepalived(args []string) int {
	fs := flag.NewFlagSet("import-keepalived", flag.ContinueOnError)
	in := fs.String("in", "", "keepalived.conf to import (its include files are read too)")
	base := fs.String("base", "", "Fulcrum config whose network section (and everything else not imported) the result keeps")
	out := fs.String("out", "", "write the Fulcrum YAML here (default stdout)")
	id := fs.String("config-id", "", "keepalived config id selecting @ID conditional lines (keepalived -i)")
	if err := fs.Parse(args); err != nil || *in == "" || fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: fulcrum-image import-keepalived -in keepalived.conf [-base config.yaml] [-out fulcrum.yaml] [-config-id ID]")
		return 2
	}
	res, err := keepalived.ImportFile(*in, *base, *id)
	if err != nil {
		fmt.Fprintf(os.Stderr, "import-keepalived: %v\n", err)
		return 1
	}
	if *out == "" {
		os.Stdout.Write(res.YAML)
	} else if err := os.WriteFile(*out, res.YAML, 0o600); err != nil {
		fmt.Fprintf(os.Stderr, "import-keepalived: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "imported %d virtual servers and %d VRRP instances; %d directives not converted (or not exactly):\n", res.VirtualServers, res.Instances, len(res.Issues))
	for _, is := range res.Issues {
		fmt.Fprintf(os.Stderr, "  %s\n", is)
	}
	if *base == "" {
		fmt.Fprintln(os.Stderr, "no base config (-base): the result needs a network section before check-config passes")
		return 0
	}
	if _, err := config.Parse(res.YAML); err != nil {
		fmt.Fprintln(os.Stderr, "the result does not validate yet:")
		for _, p := range config.Problems(err) {
			fmt.Fprintf(os.Stderr, "  %s\n", p)
		}
		return 1
	}
	fmt.Fprintln(os.Stderr, "the result validates (same loader as check-config)")
	return 0
}
