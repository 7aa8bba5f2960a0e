// Package testkit is the one set of test helpers every package's tests
// share: Eventually (polling that always fails the test on timeout, with the
// last error), Require (capability checks that skip on a developer machine
// and fail in CI), and NS (anonymous network namespaces joined by veth
// pairs, released at cleanup).
//
// It lives at the bottom layer (lbcore) and imports no other package of the
// project, so tests anywhere (lbcore, netsetup, services, init, image, qemu)
// can use it without an import cycle between top-level folders.
package testkit
