// Command fulcrum-lab runs the interactive QEMU lab:
//
//	fulcrum-lab up [-out out]   build the lab network, boot lb1, print how to reach it
//	fulcrum-lab down            stop the guests, remove every namespace the lab made
//	fulcrum-lab console lb1     attach to a guest's serial console
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/fulcrum-lb/fulcrum/qemu/appliance"
	"github.com/fulcrum-lb/fulcrum/qemu/lab"
)

func main() {
	fs := flag.NewFlagSet("fulcrum-lab", flag.ExitOnError)
	out := fs.String("out", "out", "directory with the built image")
	state := fs.String("state", lab.DefaultStateDir, "lab state directory")
	configs := fs.String("configs", "qemu/configs", "directory with the lab's appliance configs")
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: fulcrum-lab up|down|console NAME [flags]")
		os.Exit(2)
	}
	verb := os.Args[1]
	fs.Parse(os.Args[2:])
	if err := run(verb, fs.Args(), *out, *state, *configs); err != nil {
		fmt.Fprintf(os.Stderr, "fulcrum-lab %s: %v\n", verb, err)
		os.Exit(1)
	}
}

func run(verb string, args []string, out, state, configs string) error {
	switch verb {
	case "up":
		abs, _ := filepath.Abs(out)
		os.Setenv("FULCRUM_OUT", abs)
		img, err := appliance.FindImage()
		if err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		st, err := lab.Up(ctx, lab.Options{StateDir: state, Image: img, ConfigDir: configs, Log: func(f string, a ...any) { fmt.Printf(f+"\n", a...) }})
		if err != nil {
			if st != nil {
				return fmt.Errorf("%w (partial lab left for inspection; `make lab-down` removes it)", err)
			}
			return err
		}
		fmt.Print(st.Describe(state))
		return nil
	case "down":
		if err := lab.Down(state); err != nil {
			return err
		}
		fmt.Println("lab removed")
		return nil
	case "console":
		if len(args) != 1 {
			return fmt.Errorf("usage: fulcrum-lab console NAME")
		}
		return lab.Attach(state, args[0], os.Stdin, os.Stdout)
	}
	return fmt.Errorf("unknown command %q (up, down, console)", verb)
}
