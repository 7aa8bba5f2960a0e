package qemu

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fulcrum-lb/fulcrum/image/netboot"
	"github.com/fulcrum-lb/fulcrum/qemu/appliance"
	"github.com/fulcrum-lb/fulcrum/qemu/netlab"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

// TestPXEBootFromNetbootServer runs the netboot server (image/netboot, as
// fulcrum-netboot does) in a lab host on the Management segment at
// 192.0.2.129 and boots a guest with no disk and no -kernel from its
// management NIC with QEMU's own iPXE ROM: the ROM's DHCP request carries
// iPXE's user class, so the server hands it the boot.ipxe URL, iPXE loads
// kernel and initramfs over HTTP, and the appliance (config baked into the
// image: lb1) brings up its bonds and reports ready.
func TestPXEBootFromNetbootServer(t *testing.T) {
	img, err := appliance.FindImage()
	if err != nil {
		t.Fatal(err)
	}
	lab := appliance.NewLab(t)
	host, err := lab.Host("pxe", netlab.Management, []string{"192.0.2.129/25"}, "")
	if err != nil {
		t.Fatal(err)
	}
	logger, hook := logtest.NewNullLogger()
	var srv *netboot.Server
	err = host.Do(func() error {
		var err error
		srv, err = netboot.Listen(netboot.Config{
			Interface: "eth0",
			Dir:       filepath.Join(filepath.Dir(img.Kernel), "pxe"),
			PoolStart: []byte{192, 0, 2, 200}, PoolEnd: []byte{192, 0, 2, 209},
			Log: logger,
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ctx); err != nil {
			t.Errorf("netboot server: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })

	v := appliance.Boot(t, lab, appliance.Image{}, appliance.Options{Node: 1, Management: true, Firmware: &appliance.Firmware{PXE: true}})
	ready, err := v.WaitReady(bootTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("PXE boot (iPXE ROM, HTTP): QEMU start → ready %.1fs", ready.Seconds())
	// (iPXE prints to the VGA console, which this guest does not have: the
	// server's log below shows what it fetched.)
	if out := v.Console.Output(); !strings.Contains(out, "fulcrum: ready (host lb1") {
		t.Errorf("ready line does not name lb1:\n%s", tail(out, 1500))
	}

	mgmtMAC := appliance.MAC(1, netlab.Management, 1)
	var acked bool
	got := map[string]bool{}
	for _, e := range hook.AllEntries() {
		switch e.Message {
		case "dhcp":
			if e.Data["mac"] == mgmtMAC && e.Data["reply"] == "ACK" && e.Data["client"] == "ipxe" &&
				strings.HasSuffix(e.Data["bootfile"].(string), "192.0.2.129/boot.ipxe") {
				acked = true
			}
		case "http":
			got[e.Data["path"].(string)] = true
		}
		t.Logf("%5.1fs after QEMU start: %s %v", e.Time.Sub(v.Started).Seconds(), e.Message, e.Data)
	}
	if !acked {
		t.Errorf("no DHCP ACK to %s as iPXE with the boot.ipxe URL; server log:\n%s", mgmtMAC, entries(hook))
	}
	for _, p := range []string{"/boot.ipxe", "/vmlinuz", "/initramfs.cpio.gz"} {
		if !got[p] {
			t.Errorf("guest did not fetch %s over HTTP; server log:\n%s", p, entries(hook))
		}
	}
	if h := hostname(t, v); h != "lb1" { // waits for the shell prompt first
		t.Errorf("host name %q, want lb1", h)
	}
	for _, bond := range []string{"failover", "internal", "external"} {
		waitBondMembers(t, v, bond, 2)
	}
}

func entries(h *logtest.Hook) string {
	var b strings.Builder
	for _, e := range h.AllEntries() {
		s, _ := e.String()
		b.WriteString(s)
	}
	return b.String()
}
