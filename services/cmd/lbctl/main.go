// Command lbctl is the appliance CLI. Init runs `lbctl -console` on the
// serial console: a login prompt checked against the config's bcrypt hash,
// then the interactive CLI (help, Tab completion). From the maintenance
// shell, `lbctl show vs` (any command as arguments) runs one command.
//
// Make a password hash for management.console.password_hash with
//
//	go run ./services/cmd/lbctl -hash-password     (reads the password from stdin)
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"github.com/fulcrum-lb/fulcrum/services/console"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
)

func main() {
	path := flag.String("config", "/etc/fulcrum/config.yaml", "appliance config file (for the console password hash)")
	interactive := flag.Bool("console", false, "run the login + CLI session on stdin/stdout (the serial console)")
	notice := flag.String("notice", "", "text shown before every login prompt (maintenance reason)")
	hash := flag.Bool("hash-password", false, "read a password from stdin and print its bcrypt hash")
	sockets := flag.String("socket-dir", localapi.Dir, "directory of the daemons' local API sockets")
	recovery := flag.Bool("recovery", false, "recovery mode: admin logs in at this console without a password (init passes it for the kernel argument "+console.RecoveryParam+")")
	failFile := flag.String("fail-file", "/run/fulcrum/console-failures", "failed-login count, kept across console restarts")
	flag.Parse()

	if *hash {
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && line == "" {
			fatal(fmt.Errorf("reading password: %w", err))
		}
		h, err := console.HashPassword(strings.TrimRight(line, "\r\n"))
		if err != nil {
			fatal(err)
		}
		fmt.Println(h)
		return
	}

	cli := &console.CLI{API: localapi.NewAppliance(*sockets), Out: os.Stdout}
	if !*interactive {
		stdin := bufio.NewReader(os.Stdin)
		cli.ReadLine = func(string) (string, error) {
			l, err := stdin.ReadString('\n')
			if err != nil && l == "" {
				return "", err
			}
			return strings.TrimRight(l, "\r\n"), nil
		}
		cli.Init()
		if flag.NArg() == 0 {
			fmt.Fprintln(os.Stderr, "usage: lbctl COMMAND... (try lbctl help), or lbctl -console")
			os.Exit(2)
		}
		if err := cli.Run(context.Background(), strings.Join(flag.Args(), " ")); err != nil && err != console.ErrLogout {
			fatal(err)
		}
		return
	}

	// Ctrl-C in the shell must not end the console: take SIGINT (handled
	// signals go back to default in the shell we start).
	signal.Notify(make(chan os.Signal, 1), syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTSTP)
	h, cfgNotice, locked := console.ConsoleHash(*path)
	host, _ := os.Hostname()
	s := &console.Session{In: os.Stdin, Out: os.Stdout, Term: console.OpenTerm(int(os.Stdin.Fd())), Hostname: host,
		Hash: h, Recovery: *recovery, Notice: *notice, CLI: cli, FailFile: *failFile}
	if locked != nil {
		s.Locked = locked.Error()
	}
	if s.Notice == "" {
		s.Notice = cfgNotice
	}
	cli.Shell = s.RunShell(func() error {
		cmd := exec.Command("/bin/sh")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.Env = append(os.Environ(), "PATH=/bbin:/bin:/ubin", "HOME=/tmp")
		err := cmd.Run()
		if _, ok := err.(*exec.ExitError); ok {
			return nil
		}
		return err
	})
	cli.Init()
	if err := s.Serve(context.Background()); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "lbctl: %v\n", err)
	os.Exit(1)
}
