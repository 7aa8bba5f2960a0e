package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// TestStatusSocketIsOwnerOnly checks that lbd's local API socket is created
// mode 0600 (only root may drive the LB daemon), whatever the umask.
func TestStatusSocketIsOwnerOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lbd.sock")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go serveStatus(ctx, logrus.NewEntry(logrus.New()), path, http.NotFoundHandler())
	deadline := time.Now().Add(5 * time.Second)
	for {
		fi, err := os.Stat(path)
		if err == nil && fi.Mode()&os.ModeSocket != 0 {
			// the mode is set right after bind; give the chmod its moment
			time.Sleep(50 * time.Millisecond)
			fi, _ = os.Stat(path)
			if perm := fi.Mode().Perm(); perm != 0o600 {
				t.Fatalf("lbd socket mode %v, want 0600", perm)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("socket %s not created within 5s (%v)", path, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
