package lbd

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/sirupsen/logrus"
)

// TestStatusSocketIsOwnerOnly checks that lbd's local API socket is mode
// 0600 (only root may drive the LB daemon) once it answers, whatever the
// umask. Before daemon.ServeSocket it was 0755.
func TestStatusSocketIsOwnerOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lbd.sock")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go serveSocket(ctx, logrus.NewEntry(logrus.New()), path, http.NotFoundHandler())
	testkit.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
		c, err := net.Dial("unix", path)
		if err == nil {
			c.Close()
		}
		return err
	})
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("lbd socket mode %v, want 0600", perm)
	}
}
