// Command fulcrum-lab runs the interactive QEMU HA lab:
//
//	fulcrum-lab up [-out out]     build the lab network, start the member servers,
//	                              boot lb1 and lb2, print how to reach them
//	fulcrum-lab down              stop the guests and member servers, remove every
//	                              namespace the lab made
//	fulcrum-lab console lb1       attach to a guest's serial console
//	fulcrum-lab get HOST IP       one request to IP:80 from a lab host (e.g. client1)
//
// The hidden verb `serve-member NAME` is the member server the lab starts
// inside each member namespace (it answers "<NAME> <source ip:port>").
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/fulcrum-lb/fulcrum/qemu/appliance"
	"github.com/fulcrum-lb/fulcrum/qemu/lab"
	"github.com/fulcrum-lb/fulcrum/qemu/scenario"
)

func main() {
	fs := flag.NewFlagSet("fulcrum-lab", flag.ExitOnError)
	out := fs.String("out", "out", "directory with the built image")
	state := fs.String("state", lab.DefaultStateDir, "lab state directory")
	configs := fs.String("configs", "qemu/configs", "directory with the lab's appliance configs (ha-lb1.yaml, ha-lb2.yaml)")
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: fulcrum-lab up|down|console NAME|get HOST IP [flags]")
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
		self, err := os.Executable()
		if err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		st, err := lab.Up(ctx, lab.Options{
			StateDir: state, Image: img, ConfigDir: configs,
			ServeCommand: []string{self, "serve-member"},
			Log:          func(f string, a ...any) { fmt.Printf(f+"\n", a...) },
		})
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
	case "get":
		if len(args) != 2 {
			return fmt.Errorf("usage: fulcrum-lab get HOST IP   (e.g. get client1 %s)", scenario.VIPNAT)
		}
		c := &scenario.Client{NS: scenario.NamedNS(lab.Prefix + args[0]), Name: args[0], Timeout: 3 * time.Second}
		r, err := c.Get(args[1])
		if err != nil {
			return err
		}
		fmt.Printf("%s answered; it saw the request come from %s\n", r.Member, r.Source)
		return nil
	case "serve-member":
		if len(args) != 1 {
			return fmt.Errorf("usage: fulcrum-lab serve-member NAME")
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(scenario.ServicePort))
		if err != nil {
			return err
		}
		fmt.Printf("member server %s listening on %s\n", args[0], ln.Addr())
		return scenario.Serve(ctx, ln, args[0])
	}
	return fmt.Errorf("unknown command %q (up, down, console, get)", verb)
}
