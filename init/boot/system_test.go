package boot

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestAbsentPCIDriversAreNotLoaded: a PCI driver (PCI aliases, perhaps
// auxiliary ones for the devices it creates itself) is loaded only when a
// present device matches one of its aliases; modules without aliases or
// with aliases on other buses are always loaded, and a pattern that does
// not parse counts as a match (a missing NIC driver is worse than a slow
// boot).
func TestAbsentPCIDriversAreNotLoaded(t *testing.T) {
	dir := t.TempDir()
	aliasFile := filepath.Join(dir, "modules.alias")
	os.WriteFile(aliasFile, []byte(`alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias pci:v000015B3d0000101Dsv*sd*bc*sc*i* mlx5_core
alias auxiliary:mlx5_core.eth mlx5_core
alias auxiliary:only.aux auxonly
alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e
alias pci:v*d*sv*sd*bc01sc06i01* ahci
alias virtio:d00000001v* virtio_net
alias usb:v*p*d*dc*dsc*dp*ic08isc06ip50in* usb_storage
alias pci:v0000BEEFd[* odd
`), 0o644)
	aliases, err := readAliases(aliasFile)
	if err != nil {
		t.Fatal(err)
	}
	bus := filepath.Join(dir, "devices")
	for name, alias := range map[string]string{
		"0000:00:02.0": "pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00", // virtio-net
		"0000:00:1f.2": "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01", // q35 AHCI
	} {
		os.MkdirAll(filepath.Join(bus, name), 0o755)
		os.WriteFile(filepath.Join(bus, name, "modalias"), []byte(alias+"\n"), 0o444)
	}
	devices, err := deviceModaliases(bus)
	if err != nil || len(devices) != 2 {
		t.Fatalf("devices %v (%v), want 2", devices, err)
	}
	names := []string{"ip_vs", "virtio_pci", "virtio_net", "mlx5_core", "e1000e", "ahci", "usb_storage", "odd", "bonding", "auxonly"}
	load, skipped := withoutAbsentPCIDrivers(names, aliases, devices)
	if want := []string{"ip_vs", "virtio_pci", "virtio_net", "ahci", "usb_storage", "odd", "bonding", "auxonly"}; !slices.Equal(load, want) {
		t.Errorf("load %v, want %v", load, want)
	}
	if want := []string{"mlx5_core", "e1000e"}; !slices.Equal(skipped, want) {
		t.Errorf("skipped %v, want %v", skipped, want)
	}
}

func TestReadAliasesRejectsMalformedLines(t *testing.T) {
	f := filepath.Join(t.TempDir(), "modules.alias")
	os.WriteFile(f, []byte("alias pci:v* e1000e\nalis pci:v* igb\n"), 0o644)
	if _, err := readAliases(f); err == nil {
		t.Error("a line not starting with alias was accepted")
	}
}
