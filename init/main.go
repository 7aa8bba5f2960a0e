// Command init is the appliance's PID 1. All logic lives in init/boot.
package main

import "github.com/fulcrum-lb/fulcrum/init/boot"

func main() { boot.Run() }
