// Command vrrpd is the appliance's VRRP daemon (package services/vrrpd).
// init starts it after lbd is ready (services/manifest).
package main

import (
	"github.com/fulcrum-lb/fulcrum/services/daemon"
	"github.com/fulcrum-lb/fulcrum/services/vrrpd"
)

func main() { daemon.Main("vrrpd", vrrpd.Run) }
