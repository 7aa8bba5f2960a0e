// Package l7 groups the L7 (HTTP) load-balancing libraries the proxy
// daemon (services/l7, services/cmd/l7d) is built from: cookie (the
// persistence cookie's codec), balance (member choice by scheduler and
// health) and proxyproto (PROXY protocol v2 headers toward members).
package l7
