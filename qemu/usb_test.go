package qemu

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/image/usbimg"
	"github.com/fulcrum-lb/fulcrum/qemu/appliance"
	"github.com/fulcrum-lb/fulcrum/qemu/vm"
)

// usbImage copies out/fulcrum-usb.img (sparse) for one test, so the test may
// edit its config partition.
func usbImage(t *testing.T) string {
	t.Helper()
	img, err := appliance.FindImage()
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(filepath.Dir(img.Kernel), "fulcrum-usb.img")
	in, err := os.Open(src)
	if err != nil {
		t.Fatalf("USB image missing (%v): run `make image`", err)
	}
	defer in.Close()
	dst := filepath.Join(t.TempDir(), "stick.img")
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	buf := make([]byte, 1<<20)
	zero := make([]byte, 1<<20)
	var off int64
	for {
		n, err := io.ReadFull(in, buf)
		if n > 0 {
			if string(buf[:n]) != string(zero[:n]) {
				if _, werr := out.WriteAt(buf[:n], off); werr != nil {
					t.Fatal(werr)
				}
			}
			off += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := out.Truncate(off); err != nil {
		t.Fatal(err)
	}
	return dst
}

// stickArgs puts the image on a USB stick (xHCI, usb-storage), the boot
// device; with ovmf, the firmware is OVMF (UEFI) with its own copy of the
// variable store, else QEMU's default SeaBIOS (legacy BIOS).
func stickArgs(t *testing.T, image string, ovmf bool) []string {
	t.Helper()
	args := []string{
		"-device", "qemu-xhci,id=xhci",
		"-drive", "if=none,id=stick,format=raw,file=" + image,
		"-device", "usb-storage,bus=xhci.0,drive=stick,bootindex=0",
	}
	if ovmf {
		code, vars := "/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"
		b, err := os.ReadFile(vars)
		if err != nil {
			t.Fatalf("OVMF (Debian package ovmf) missing: %v", err)
		}
		myVars := filepath.Join(t.TempDir(), "OVMF_VARS.fd")
		if err := os.WriteFile(myVars, b, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args,
			"-drive", "if=pflash,format=raw,readonly=on,file="+code,
			"-drive", "if=pflash,format=raw,file="+myVars)
	}
	return args
}

func bootStick(t *testing.T, image string, ovmf bool) (*vm.VM, time.Duration) {
	t.Helper()
	lab := appliance.NewLab(t)
	v := appliance.Boot(t, lab, appliance.Image{}, appliance.Options{Node: 1, Firmware: &appliance.Firmware{Args: stickArgs(t, image, ovmf)}})
	ready, err := v.WaitReady(bootTimeout)
	if err != nil {
		t.Fatal(err)
	}
	return v, ready
}

func hostname(t *testing.T, v *vm.VM) string {
	t.Helper()
	if err := v.Console.ExpectString("$ ", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	out, err := v.Run("uname -n", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^(lb[\w-]*)\r?$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no host name in %q", out)
	}
	return m[1]
}

// TestUSBImageBootsOnUEFIWithEditedConfig edits config.yaml on the image's
// config partition (as an operator would on the stick: another host name)
// and boots the image under OVMF from a USB stick: GRUB's UEFI image loads
// the kernel from the ESP, init finds the config partition and runs the
// edited config, and the appliance comes up with its bonds.
func TestUSBImageBootsOnUEFIWithEditedConfig(t *testing.T) {
	image := usbImage(t)
	cfg, err := usbimg.ReadConfig(image)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(cfg), "hostname: lb1", "hostname: lb-usb", 1)
	if edited == string(cfg) {
		t.Fatalf("config on the stick has no 'hostname: lb1':\n%s", cfg)
	}
	if err := usbimg.WriteConfig(image, []byte(edited)); err != nil {
		t.Fatal(err)
	}
	v, ready := bootStick(t, image, true)
	t.Logf("UEFI (OVMF) USB boot: QEMU start → ready %.1fs", ready.Seconds())
	out := v.Console.Output()
	if !strings.Contains(out, "fulcrum: ready (host lb-usb") {
		t.Errorf("ready line does not name lb-usb:\n%s", tail(out, 1500))
	}
	if !regexp.MustCompile(`fulcrum: config: config.yaml on config partition FULCRUM-CFG \(/dev/sd\w+\)`).MatchString(out) {
		t.Errorf("console does not say the config came from the partition:\n%s", tail(out, 1500))
	}
	if h := hostname(t, v); h != "lb-usb" {
		t.Errorf("host name %q, want lb-usb", h)
	}
	for _, bond := range []string{"failover", "internal", "external"} {
		waitBondMembers(t, v, bond, 2)
	}
	// The stick was booted through UEFI: the kernel sees EFI runtime.
	if !bootedEFI(t, v) {
		t.Error("no /sys/firmware/efi: not a UEFI boot")
	}
}

// TestUSBImageBootsOnBIOS boots the image as built under SeaBIOS (legacy
// BIOS: boot.img in the MBR, GRUB's core in the BIOS boot partition) and
// checks that the config partition's config (the build's lb1.yaml) runs.
func TestUSBImageBootsOnBIOS(t *testing.T) {
	image := usbImage(t)
	v, ready := bootStick(t, image, false)
	t.Logf("BIOS (SeaBIOS) USB boot: QEMU start → ready %.1fs", ready.Seconds())
	out := v.Console.Output()
	if !strings.Contains(out, "fulcrum: config: config.yaml on config partition FULCRUM-CFG") {
		t.Errorf("console does not say the config came from the partition:\n%s", tail(out, 1500))
	}
	if h := hostname(t, v); h != "lb1" {
		t.Errorf("host name %q, want lb1", h)
	}
	if bootedEFI(t, v) {
		t.Error("/sys/firmware/efi exists: booted through UEFI, not BIOS")
	}
}

// TestUSBImageInvalidConfigMeansMaintenance puts an invalid config on the
// stick: init must not fall back to the built-in config but enter
// maintenance, naming the partition and the bad field. Then, with
// config.yaml deleted, the built-in config runs and the console says so.
func TestUSBImageInvalidConfigMeansMaintenance(t *testing.T) {
	image := usbImage(t)
	cfg, err := usbimg.ReadConfig(image)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(cfg), "addresses: [198.51.100.2/24]", "addresses: [198.51.100.2/24]\n    mtu: 70000", 1)
	if bad == string(cfg) {
		t.Fatal("could not break the config")
	}
	if err := usbimg.WriteConfig(image, []byte(bad)); err != nil {
		t.Fatal(err)
	}
	lab := appliance.NewLab(t)
	v := appliance.Boot(t, lab, appliance.Image{}, appliance.Options{Node: 1, Firmware: &appliance.Firmware{Args: stickArgs(t, image, false)}})
	if err := v.Console.ExpectString("fulcrum: MAINTENANCE", bootTimeout); err != nil {
		t.Fatal(err)
	}
	if err := v.Console.ExpectString("network.internal.mtu", 10*time.Second); err != nil {
		t.Errorf("maintenance notice does not name the bad field: %v", err)
	}
	if out := v.Console.Output(); !strings.Contains(out, "config partition FULCRUM-CFG") || strings.Contains(out, "fulcrum: ready") {
		t.Errorf("want maintenance naming the config partition and no ready line:\n%s", tail(out, 2000))
	}
	v.Stop()

	if err := usbimg.WriteConfig(image, nil); err != nil {
		t.Fatal(err)
	}
	lab2 := appliance.NewLab(t)
	v2 := appliance.Boot(t, lab2, appliance.Image{}, appliance.Options{Node: 1, Firmware: &appliance.Firmware{Args: stickArgs(t, image, false)}})
	if _, err := v2.WaitReady(bootTimeout); err != nil {
		t.Fatal(err)
	}
	out := v2.Console.Output()
	if !strings.Contains(out, "no config.yaml on it; using the built-in config") || !strings.Contains(out, "fulcrum: config: built-in /etc/fulcrum/config.yaml") {
		t.Errorf("console does not say the built-in config is used:\n%s", tail(out, 2000))
	}
}

// bootedEFI tells whether the guest kernel was started by UEFI firmware.
func bootedEFI(t *testing.T, v *vm.VM) bool {
	t.Helper()
	out, err := v.Run("ls /sys/firmware", 30*time.Second)
	if err != nil || !strings.Contains(out, "acpi") {
		t.Fatalf("ls /sys/firmware: %q %v", out, err)
	}
	return regexp.MustCompile(`(?m)^efi\r?$`).MatchString(out)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
