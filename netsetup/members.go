package netsetup

import (
	"fmt"
	"net"
	"strings"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
)

// NIC is what member selection needs to know about a link.
type NIC struct {
	Name  string
	MAC   net.HardwareAddr // permanent address when the kernel reports one
	Index int
}

// ResolveMembers maps each selector (an interface name or a MAC address) of a
// group to a NIC. Selectors that match nothing are returned in missing.
func ResolveMembers(selectors []string, nics []NIC) (found []NIC, missing []string, err error) {
	used := map[string]bool{}
	for _, sel := range selectors {
		var match *NIC
		for i := range nics {
			n := &nics[i]
			if config.IsMAC(sel) {
				if strings.EqualFold(n.MAC.String(), sel) {
					match = n
					break
				}
			} else if n.Name == sel {
				match = n
				break
			}
		}
		if match == nil {
			missing = append(missing, sel)
			continue
		}
		if used[match.Name] {
			return nil, nil, fmt.Errorf("NIC %s is selected twice (by %q)", match.Name, sel)
		}
		used[match.Name] = true
		found = append(found, *match)
	}
	return found, missing, nil
}
