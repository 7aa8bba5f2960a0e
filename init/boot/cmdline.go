package boot

import "strings"

// Kernel command-line parameters init understands.
const (
	// ParamConfig overrides the config path (default the baked-in one).
	ParamConfig = "fulcrum.config"
	// ParamServices limits which daemons start ("none" for none); lab tests
	// use it to look at a bare appliance.
	ParamServices = "fulcrum.services"
	// ParamRecovery=1 lets admin log in at the serial console without a
	// password (a forgotten password, a config without a usable hash). It
	// can only be typed at the boot loader, i.e. at the physical console
	// or its IPMI serial-over-LAN; init announces it loudly.
	ParamRecovery = "fulcrum.recovery"
)

// Cmdline is the parsed kernel command line: key=value pairs and bare flags
// (value "").
type Cmdline map[string]string

// ParseCmdline parses /proc/cmdline's content. Double quotes group values
// with spaces, as the kernel does.
func ParseCmdline(s string) Cmdline {
	c := Cmdline{}
	var fields []string
	var cur strings.Builder
	inQuote := false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote = !inQuote
		case (r == ' ' || r == '\n' || r == '\t') && !inQuote:
			if cur.Len() > 0 {
				fields = append(fields, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		fields = append(fields, cur.String())
	}
	for _, f := range fields {
		k, v, _ := strings.Cut(f, "=")
		c[k] = v
	}
	return c
}
