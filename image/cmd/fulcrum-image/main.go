// Command fulcrum-image builds the appliance's boot artefacts from a config:
//
//	fulcrum-image -config qemu/configs/lb1.yaml -out out
//
// and, without building anything (no kernel, no network):
//
//	fulcrum-image check-config FILE        validate a config as the appliance does
//	fulcrum-image import-keepalived -in keepalived.conf [-base config.yaml] [-out fulcrum.yaml]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/fulcrum-lb/fulcrum/image/build"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	if len(os.Args) > 1 {
		if sub := subcommand(os.Args[1]); sub != nil {
			os.Exit(sub(os.Args[2:]))
		}
	}
	var o build.Options
	var extra listFlag
	flag.StringVar(&o.ConfigPath, "config", "qemu/configs/lb1.yaml", "appliance config (YAML)")
	flag.StringVar(&o.OutDir, "out", "out", "output directory")
	flag.StringVar(&o.CacheDir, "cache", ".cache", "cache directory (kernel packages, build temp)")
	flag.StringVar(&o.KernelPackage, "kernel-package", "linux-image-amd64", "Debian kernel package to take the kernel and modules from")
	flag.StringVar(&o.KernelDeb, "kernel-deb", "", "use this local kernel .deb instead of downloading one")
	flag.StringVar(&o.SourceDir, "src", ".", "root of the fulcrum Go module")
	flag.Var(&extra, "extra-file", "host:archive file to add to the initramfs (repeatable)")
	flag.Parse()
	o.ExtraFiles = extra
	o.Log = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := build.Build(ctx, o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fulcrum-image: %v\nno image was built\n", err)
		os.Exit(1)
	}
	fmt.Print(res.Summary())
}
