// Command l7d is the L7 proxy daemon: it serves the virtual servers of
// mode http and https (package services/l7). init starts it after lbd,
// whose health state it follows.
package main

import (
	"context"
	"flag"
	"time"

	"github.com/fulcrum-lb/fulcrum/services/daemon"
	"github.com/fulcrum-lb/fulcrum/services/l7"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/sirupsen/logrus"
)

func main() {
	o := l7.Options{HealthEvery: time.Second, ConfigEvery: 2 * time.Second}
	flag.StringVar(&o.Socket, "status-socket", localapi.SocketPath("", localapi.L7D), "unix socket serving the L7 counters (\"\" for none)")
	flag.StringVar(&o.SocketDir, "socket-dir", "", "directory of the other daemons' sockets (default "+localapi.Dir+")")
	daemon.Main("l7d", func(ctx context.Context, path string, log *logrus.Entry) error {
		o.ConfigPath = path
		return l7.Run(ctx, o, log)
	})
}
