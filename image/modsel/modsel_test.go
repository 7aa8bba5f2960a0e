package modsel

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// fakeModule builds a minimal ELF64 relocatable object whose .modinfo
// section holds the given key=value strings, as a real .ko does.
func fakeModule(t *testing.T, modinfo ...string) []byte {
	t.Helper()
	info := []byte(strings.Join(modinfo, "\x00") + "\x00")
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	const ehSize, shSize = 64, 64
	infoOff := ehSize
	strOff := infoOff + len(info)
	shOff := (strOff + len(shstr) + 7) &^ 7
	var b bytes.Buffer
	w := func(v any) { binary.Write(&b, binary.LittleEndian, v) }
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0})
	b.Write(make([]byte, 8))
	w(uint16(1))  // ET_REL
	w(uint16(62)) // EM_X86_64
	w(uint32(1))
	w(uint64(0))      // entry
	w(uint64(0))      // phoff
	w(uint64(shOff))  // shoff
	w(uint32(0))      // flags
	w(uint16(ehSize)) // ehsize
	w(uint16(0))      // phentsize
	w(uint16(0))      // phnum
	w(uint16(shSize)) // shentsize
	w(uint16(3))      // shnum
	w(uint16(2))      // shstrndx
	b.Write(info)
	b.Write(shstr)
	b.Write(make([]byte, shOff-b.Len()))
	sh := func(name, typ uint32, off, size int) {
		w(name)
		w(typ)
		w(uint64(0)) // flags
		w(uint64(0)) // addr
		w(uint64(off))
		w(uint64(size))
		w(uint32(0))
		w(uint32(0))
		w(uint64(1))
		w(uint64(0))
	}
	sh(0, 0, 0, 0)
	sh(1, 1, infoOff, len(info))  // .modinfo, PROGBITS
	sh(10, 3, strOff, len(shstr)) // .shstrtab, STRTAB
	return b.Bytes()
}

func writeModule(t *testing.T, dir, rel string, data []byte) {
	t.Helper()
	p := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	switch {
	case strings.HasSuffix(rel, ".xz"):
		zw, _ := xz.NewWriter(&buf)
		zw.Write(data)
		zw.Close()
		data = buf.Bytes()
	case strings.HasSuffix(rel, ".zst"):
		zw, _ := zstd.NewWriter(&buf)
		zw.Write(data)
		zw.Close()
		data = buf.Bytes()
	case strings.HasSuffix(rel, ".gz"):
		zw := gzip.NewWriter(&buf)
		zw.Write(data)
		zw.Close()
		data = buf.Bytes()
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A kernel tree shaped like Debian's: ip_vs → nf_conntrack → libcrc32c, whose
// softdep names an alias provided by crc32c_generic and crc32c_intel.
func fakeTree(t *testing.T) string {
	dir := t.TempDir()
	writeModule(t, dir, "kernel/net/netfilter/ipvs/ip_vs.ko.zst", fakeModule(t, "name=ip_vs", "depends=nf_conntrack,nf_defrag_ipv6,libcrc32c"))
	writeModule(t, dir, "kernel/net/netfilter/ipvs/ip_vs_rr.ko.xz", fakeModule(t, "name=ip_vs_rr", "depends=ip_vs"))
	writeModule(t, dir, "kernel/net/netfilter/nf_conntrack.ko.gz", fakeModule(t, "name=nf_conntrack", "depends=nf_defrag_ipv6,libcrc32c"))
	writeModule(t, dir, "kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko", fakeModule(t, "name=nf_defrag_ipv6", "depends="))
	writeModule(t, dir, "kernel/lib/libcrc32c.ko", fakeModule(t, "softdep=pre: crc32c", "depends=", "name=libcrc32c"))
	writeModule(t, dir, "kernel/crypto/crc32c_generic.ko", fakeModule(t, "alias=crypto-crc32c", "alias=crc32c", "depends=", "name=crc32c_generic"))
	writeModule(t, dir, "kernel/arch/x86/crypto/crc32c-intel.ko", fakeModule(t, "alias=crypto-crc32c", "alias=crc32c", "depends=", "name=crc32c_intel"))
	writeModule(t, dir, "kernel/drivers/net/bonding/bonding.ko", fakeModule(t, "name=bonding", "depends=tls"))
	writeModule(t, dir, "kernel/net/tls/tls.ko", fakeModule(t, "name=tls", "depends="))
	writeModule(t, dir, "kernel/drivers/net/unrelated.ko", fakeModule(t, "name=unrelated", "depends="))
	os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/drivers/virtio/virtio.ko\n"), 0o644)
	return dir
}

func names(mods []*Module) []string {
	var out []string
	for _, m := range mods {
		out = append(out, m.Name)
	}
	return out
}

func TestSelectClosureAcrossCompressionsAndSoftdeps(t *testing.T) {
	idx, err := Scan(fakeTree(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(idx.Modules) != 10 {
		t.Fatalf("scanned %d modules, want 10: %v", len(idx.Modules), idx.Modules)
	}
	sel, err := idx.Select([]string{"ip_vs_rr", "bonding", "virtio"}, []string{"ip_vs_twos"})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(names(sel.Modules), " ")
	for _, want := range []string{"ip_vs_rr", "ip_vs", "nf_conntrack", "nf_defrag_ipv6", "libcrc32c", "crc32c_generic", "bonding", "tls"} {
		if !strings.Contains(" "+got+" ", " "+want+" ") {
			t.Errorf("selection %q lacks %s", got, want)
		}
	}
	for _, unwanted := range []string{"unrelated", "crc32c_intel", "virtio"} {
		if strings.Contains(" "+got+" ", " "+unwanted+" ") {
			t.Errorf("selection %q has %s, which nothing needs (or is built in)", got, unwanted)
		}
	}
	if strings.Join(sel.Missing, ",") != "ip_vs_twos" {
		t.Errorf("missing = %v, want the absent optional ip_vs_twos", sel.Missing)
	}
	dep := sel.ModulesDep()
	for _, line := range []string{
		"kernel/lib/libcrc32c.ko: kernel/crypto/crc32c_generic.ko\n",
		"kernel/net/netfilter/ipvs/ip_vs_rr.ko.xz: kernel/net/netfilter/ipvs/ip_vs.ko.zst kernel/net/netfilter/nf_conntrack.ko.gz kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko kernel/lib/libcrc32c.ko kernel/crypto/crc32c_generic.ko\n",
		"kernel/drivers/net/bonding/bonding.ko: kernel/net/tls/tls.ko\n",
	} {
		if !strings.Contains(dep, line) {
			t.Errorf("modules.dep lacks %q; it is:\n%s", line, dep)
		}
	}
	alias := sel.ModulesAlias()
	if !strings.Contains(alias, "alias crypto-crc32c crc32c_generic\nalias crc32c crc32c_generic\n") || strings.Contains(alias, "crc32c_intel") {
		t.Errorf("modules.alias should list the selected crc32c_generic's aliases only; it is:\n%s", alias)
	}
}

func TestSelectRequiredMissingIsAnError(t *testing.T) {
	idx, err := Scan(fakeTree(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := idx.Select([]string{"ip_vs", "mlx5_core"}, nil); err == nil || !strings.Contains(err.Error(), "mlx5_core") {
		t.Fatalf("err = %v, want one naming mlx5_core", err)
	}
}

func TestScanRejectsCorruptModule(t *testing.T) {
	dir := fakeTree(t)
	os.WriteFile(filepath.Join(dir, "kernel/drivers/net/broken.ko"), []byte("not an elf"), 0o644)
	if _, err := Scan(dir); err == nil || !strings.Contains(err.Error(), "broken.ko") {
		t.Fatalf("err = %v, want one naming broken.ko", err)
	}
}
