package qemu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/fulcrum-lb/fulcrum/netsetup/dhcp/dhcptest"
	"github.com/fulcrum-lb/fulcrum/qemu/appliance"
	"github.com/fulcrum-lb/fulcrum/qemu/netlab"
	"github.com/fulcrum-lb/fulcrum/qemu/vm"
)

// The lab's management-segment server (DESIGN.md: 192.0.2.128/25) and the
// address its DHCP server hands out.
const (
	mgmtServer = "192.0.2.254"
	mgmtLease  = "192.0.2.140"
	// dhcpLeaseTime is short so the guest's dhcpc renews during the test.
	dhcpLeaseTime = 20 * time.Second
)

// withMgmtDHCP adds network.management (lb1's management NIC by MAC, DHCP
// on) to an lb1-style config.
func withMgmtDHCP(t *testing.T, cfg string) string {
	t.Helper()
	out := strings.Replace(cfg, "  routes:", "  management:\n    interface: \""+appliance.MAC(1, netlab.Management, 1)+"\"\n    dhcp: true\n  routes:", 1)
	if out == cfg {
		t.Fatal("config has no network routes to insert management before")
	}
	return out
}

// mgmtLab starts a lab host on the Management segment at 192.0.2.254/25
// running a server4 DHCP server (offer 192.0.2.140, router and DNS
// 192.0.2.254) and, when files is not nil, an HTTP server on :8080 serving
// them by path.
func mgmtLab(t *testing.T, files map[string]string) (*netlab.Lab, *netlab.Namespace, *dhcptest.Server) {
	t.Helper()
	lab := appliance.NewLab(t)
	host, err := lab.Host("dhsrv", netlab.Management, []string{mgmtServer + "/25"}, "")
	if err != nil {
		t.Fatal(err)
	}
	var srv *dhcptest.Server
	var ln net.Listener
	err = host.Do(func() error {
		var err error
		srv, err = dhcptest.Start(dhcptest.Config{Interface: "eth0", ServerIP: net.ParseIP(mgmtServer).To4(),
			Mask: net.CIDRMask(25, 32), Offer: net.ParseIP(mgmtLease).To4(), Router: net.ParseIP(mgmtServer).To4(),
			DNS: []net.IP{net.ParseIP(mgmtServer).To4()}, LeaseTime: dhcpLeaseTime})
		if err != nil || files == nil {
			return err
		}
		ln, err = net.Listen("tcp4", mgmtServer+":8080")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	if ln != nil {
		hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, ok := files[r.URL.Path]
			if !ok {
				http.NotFound(w, r)
				return
			}
			w.Write([]byte(body))
		})}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("http server: %v", err)
			}
		}()
		t.Cleanup(func() { hs.Shutdown(context.Background()); wg.Wait() })
	}
	return lab, host, srv
}

// guestHasAddr reports whether `ip addr` in the guest shows addr as an inet
// address (line based: daemon output may interleave). Both answers come
// from a complete dump: when the kernel interrupts the address dump (a
// lease being applied changes the table meanwhile), u-root's ip exits 1
// with "results may be incomplete", and the dump is taken again.
func guestHasAddr(t *testing.T, v *vm.VM, addr string) (bool, string) {
	t.Helper()
	var out string
	testkit.Eventually(t, 20*time.Second, 500*time.Millisecond, func() error {
		var err error
		out, err = v.Run("ip addr", 30*time.Second)
		if err != nil && strings.Contains(err.Error(), "incomplete") {
			return fmt.Errorf("address dump interrupted: %w", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		return nil
	})
	re := regexp.MustCompile(`(?m)^\s*inet ` + regexp.QuoteMeta(addr) + `/25\b`)
	return re.MatchString(out), out
}

// TestConfigURLFetchedAfterDHCP boots lb1 with fulcrum.config_url pointing
// at the lab host's HTTP server. The built-in config (lb1 plus a DHCP
// management NIC) names the NIC; init gets a lease from the lab's server4
// DHCP server, fetches lb.yaml (hostname lb-url), says so on the console and
// runs it; dhcpc then keeps the lease: the guest has 192.0.2.140 on its
// management NIC, the DNS server in resolv.conf, answers pings from the lab
// host, and renews the 20 s lease. An apply then says it lasts until
// reboot (no config partition) and config export prints the file.
func TestConfigURLFetchedAfterDHCP(t *testing.T) {
	img, err := appliance.FindImage()
	if err != nil {
		t.Fatal(err)
	}
	lb1 := withMgmtDHCP(t, string(readConfig(t, "lb1.yaml")))
	served := strings.Replace(lb1, "hostname: lb1", "hostname: lb-url", 1)
	lab, host, srv := mgmtLab(t, map[string]string{"/lb.yaml": served})
	url := "http://" + mgmtServer + ":8080/lb.yaml"
	v := appliance.Boot(t, lab, img, appliance.Options{Node: 1, Management: true, Config: []byte(lb1),
		Cmdline: "fulcrum.config_url=" + url})
	ready, err := v.WaitReady(bootTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("QEMU start → ready: %.1fs", ready.Seconds())
	out := v.Console.Output()
	if !strings.Contains(out, "fulcrum: ready (host lb-url") {
		t.Errorf("ready line does not name lb-url:\n%s", tail(out, 2000))
	}
	if m := regexp.MustCompile(`fulcrum: config: DHCP on \S+: ` + regexp.QuoteMeta(mgmtLease) + `/25 router ` + mgmtServer + `.*\(([\d.]+)s\)`).FindStringSubmatch(out); m == nil {
		t.Errorf("console does not announce the boot-time lease:\n%s", tail(out, 2000))
	} else {
		t.Logf("boot-time DHCP lease in %ss (guest clock)", m[1])
	}
	if !strings.Contains(out, "fulcrum: config: "+url+" (fetched over") {
		t.Errorf("console does not say the config came from %s:\n%s", url, tail(out, 2000))
	}
	if strings.Contains(out, "could not fetch") {
		t.Errorf("fallback announced although the URL was served:\n%s", tail(out, 2000))
	}
	if h := hostname(t, v); h != "lb-url" {
		t.Errorf("host name %q, want lb-url", h)
	}
	if ok, addrs := guestHasAddr(t, v, mgmtLease); !ok {
		t.Fatalf("guest has no %s/25:\n%s", mgmtLease, addrs)
	}
	resolv, err := v.Run("cat /etc/resolv.conf", 30*time.Second)
	if err != nil || !regexp.MustCompile(`(?m)^nameserver `+regexp.QuoteMeta(mgmtServer)+`\r?$`).MatchString(resolv) {
		t.Errorf("resolv.conf %q (%v), want nameserver %s", resolv, err, mgmtServer)
	}
	if err := host.PingUntil(mgmtLease, 20, 500*time.Millisecond); err != nil {
		t.Errorf("lab host cannot reach the leased address: %v", err)
	}
	// dhcpc (not only init) holds the lease: it renews at T1 = 10 s.
	testkit.Eventually(t, 45*time.Second, 500*time.Millisecond, func() error {
		if c := srv.Counts(); c.Renew == 0 {
			return fmt.Errorf("no lease renewal from the guest yet, %v lease (server saw %+v)", dhcpLeaseTime, c)
		}
		return nil
	})
	t.Logf("DHCP server saw %+v", srv.Counts())
	if ok, addrs := guestHasAddr(t, v, mgmtLease); !ok {
		t.Errorf("after renewal the guest has no %s/25:\n%s", mgmtLease, addrs)
	}
	// No writable config store on a config-server boot: an apply says it
	// lasts until reboot and points at export, which gives the file back.
	applied, err := v.Run("lbctl config apply "+url, 90*time.Second)
	if err != nil || !strings.Contains(applied, "NOT saved across a reboot") || !strings.Contains(applied, "config fetched from "+url) ||
		!strings.Contains(applied, "lasts until the appliance reboots") || !strings.Contains(applied, "lbctl config export") {
		t.Errorf("apply on a config-server boot: %v\n%s", err, applied)
	}
	if exported, err := v.Run("lbctl config export", 60*time.Second); err != nil || !strings.Contains(exported, "hostname: lb-url") {
		t.Errorf("config export: %v\n%s", err, exported)
	}
}

// TestConfigURLUnreachableFallsBackToBuiltIn: the lease works but nobody
// serves the URL's port, so init says it could not fetch the config and
// boots the built-in one (host lb1). The NIC comes from fulcrum.mgmt= (the
// built-in lb1.yaml has no management section).
func TestConfigURLUnreachableFallsBackToBuiltIn(t *testing.T) {
	img, err := appliance.FindImage()
	if err != nil {
		t.Fatal(err)
	}
	lab, _, _ := mgmtLab(t, nil)
	url := "http://" + mgmtServer + ":8081/lb.yaml"
	v := appliance.Boot(t, lab, img, appliance.Options{Node: 1, Management: true, Config: readConfig(t, "lb1.yaml"),
		Cmdline: "fulcrum.config_url=" + url + " fulcrum.mgmt=" + appliance.MAC(1, netlab.Management, 1)})
	ready, err := v.WaitReady(bootTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("QEMU start → ready: %.1fs", ready.Seconds())
	out := v.Console.Output()
	re := regexp.MustCompile(`fulcrum: config: could not fetch ` + regexp.QuoteMeta(url) + ` \([^)]*connection refused[^)]*\); using the built-in config`)
	if !re.MatchString(out) {
		t.Errorf("no fallback message naming the URL and the refusal:\n%s", tail(out, 2000))
	}
	if !strings.Contains(out, "fulcrum: ready (host lb1") {
		t.Errorf("ready line does not name lb1:\n%s", tail(out, 2000))
	}
	// The built-in config has no DHCP management NIC: the boot-time lease
	// was released, not left behind.
	if ok, addrs := guestHasAddr(t, v, mgmtLease); ok {
		t.Errorf("boot-time lease address left on the guest:\n%s", addrs)
	}
}
