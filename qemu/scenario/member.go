package scenario

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// Reply is what a member server answers: its name and the source address
// (ip:port) of the connection as it sees it.
type Reply struct {
	Member string
	Source netip.AddrPort
}

func (r Reply) String() string { return r.Member + " " + r.Source.String() }

// ParseReply parses a member server's answer "<name> <ip:port>\n".
func ParseReply(s string) (Reply, error) {
	name, src, ok := strings.Cut(strings.TrimSpace(s), " ")
	if !ok {
		return Reply{}, fmt.Errorf("member reply %q: want \"<name> <ip:port>\"", s)
	}
	ap, err := netip.ParseAddrPort(src)
	if err != nil {
		return Reply{}, fmt.Errorf("member reply %q: %w", s, err)
	}
	return Reply{Member: name, Source: ap}, nil
}

// Handler answers every HTTP request with "<name> <source ip:port>\n".
func Handler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%s %s\n", name, r.RemoteAddr)
	})
}

// ListenIn opens a TCP listener on addr inside ns.
func ListenIn(ns Netns, addr string) (net.Listener, error) {
	var ln net.Listener
	err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("member server on %s: %w", addr, err)
	}
	return ln, nil
}

// Serve runs a member server named name on ln until ctx ends. Kept-alive
// connections stay open for ten minutes of idleness, so a test can hold an
// established connection across a config apply.
func Serve(ctx context.Context, ln net.Listener, name string) error {
	srv := &http.Server{Handler: Handler(name), IdleTimeout: 10 * time.Minute, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("member server %s: %w", name, err)
	}
	return nil
}
