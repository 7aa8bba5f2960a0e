// Command lbctl is the appliance CLI. Init runs `lbctl -console` on the
// serial console: a login prompt checked against the config's bcrypt hash,
// then the interactive CLI (help, Tab completion). From the maintenance
// shell, `lbctl show vs` (any command as arguments) runs one command. The
// logic is in services/console.
//
// Make a password hash for management.console.password_hash with
//
//	go run ./services/cmd/lbctl -hash-password     (reads the password from stdin)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/fulcrum-lb/fulcrum/services/console"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
)

func main() {
	var o console.ConsoleOptions
	flag.StringVar(&o.ConfigPath, "config", "/etc/fulcrum/config.yaml", "appliance config file (for the console password hash)")
	interactive := flag.Bool("console", false, "run the login + CLI session on stdin/stdout (the serial console)")
	flag.StringVar(&o.Notice, "notice", "", "text shown before every login prompt (maintenance reason)")
	hash := flag.Bool("hash-password", false, "read a password from stdin and print its bcrypt hash")
	flag.StringVar(&o.SocketDir, "socket-dir", localapi.Dir, "directory of the daemons' local API sockets")
	flag.BoolVar(&o.Recovery, "recovery", false, "recovery mode: admin logs in at this console without a password (init passes it for the kernel argument "+console.RecoveryParam+")")
	flag.StringVar(&o.FailFile, "fail-file", "/run/fulcrum/console-failures", "failed-login count, kept across console restarts")
	flag.Parse()

	ctx := context.Background()
	var err error
	switch {
	case *hash:
		var h string
		if h, err = console.HashFrom(os.Stdin); err == nil {
			fmt.Println(h)
		}
	case *interactive:
		err = console.ServeConsole(ctx, o)
	default:
		err = console.RunCommand(ctx, o.SocketDir, flag.Args(), os.Stdin, os.Stdout)
	}
	if errors.Is(err, console.ErrUsage) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "lbctl: %v\n", err)
		os.Exit(1)
	}
}
