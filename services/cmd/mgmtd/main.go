// Command mgmtd is the management daemon: the HTTP API (package services/mgmtd)
// with bearer-token auth, optional TLS and /metrics, listening only on the
// management NIC or the Internal self IPs (never External), and the syslog
// forwarder (services/logring) for the console log.
package main

import (
	"github.com/fulcrum-lb/fulcrum/services/daemon"
	"github.com/fulcrum-lb/fulcrum/services/mgmtd"
)

func main() { daemon.Main("mgmtd", mgmtd.Run) }
