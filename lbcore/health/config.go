// Package health runs the appliance's health checks (TCP, HTTP, SSL/HTTPS).
package health

// Monitors is the monitors section of the appliance config, by monitor name.
// (Filled in by the health-check work.)
type Monitors map[string]Monitor

// Monitor is one health monitor definition.
type Monitor struct{}

// ApplyDefaults fills in defaults.
func (m Monitors) ApplyDefaults() {}

// Validate checks the section; paths are relative to "monitors".
func (m Monitors) Validate() error { return nil }
