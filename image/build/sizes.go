package build

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/u-root/mkuimage/cpio"
)

// MaxBootImageBytes is the size budget of the boot image, kernel plus
// gzip-compressed initramfs with every daemon in (issue 19: ≤ 25 MB). A
// build above it fails.
const MaxBootImageBytes = 25_000_000

// Part is one contributor to the initramfs: its files' size as stored and
// what they cost compressed (each file gzipped on its own at the image's
// level, so the parts add up to about the archive's size).
type Part struct {
	Name  string
	Files int
	Bytes int64
	Gzip  int64
}

// Sizes breaks the initramfs down by contributor.
type Sizes struct {
	Groups []Part // the Go busybox binary, kernel modules, firmware, the rest; biggest first
	Files  []Part // the biggest single files, biggest first
}

// busyboxPath is u-root's busybox binary: init, every daemon, lbctl and the
// console tools compiled into one program.
const busyboxPath = "bbin/bb"

// groupOf names the contributor a file of the initramfs counts under.
func groupOf(name string) string {
	switch {
	case name == busyboxPath:
		return "Go busybox bbin/bb (init, daemons, lbctl, console tools)"
	case strings.HasPrefix(name, "lib/modules/") && strings.HasSuffix(name, ".ko"),
		strings.HasPrefix(name, "lib/modules/") && strings.Contains(name, ".ko."):
		return "kernel modules"
	case strings.HasPrefix(name, "lib/firmware/"):
		return "firmware"
	}
	return "other (config, module lists, links, directories)"
}

// MeasureInitramfs reads a gzip-compressed newc initramfs and sizes its
// contributors; topFiles bounds the list of single files.
func MeasureInitramfs(path string, topFiles int) (*Sizes, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("size summary: %w", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("size summary: %s: %w", path, err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("size summary: %s: %w", path, err)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
	if err != nil {
		return nil, fmt.Errorf("size summary: %s: %w", path, err)
	}
	groups := map[string]*Part{"firmware": {Name: "firmware"}} // listed even when empty: no firmware is a fact worth showing
	var files []Part
	for _, r := range recs {
		if r.Mode&cpio.S_IFMT != cpio.S_IFREG || r.FileSize == 0 {
			continue
		}
		data, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
		if err != nil {
			return nil, fmt.Errorf("size summary: %s in %s: %w", r.Name, path, err)
		}
		gz, err := gzipSize(data)
		if err != nil {
			return nil, fmt.Errorf("size summary: %s: %w", r.Name, err)
		}
		g := groupOf(r.Name)
		if groups[g] == nil {
			groups[g] = &Part{Name: g}
		}
		groups[g].Files++
		groups[g].Bytes += int64(len(data))
		groups[g].Gzip += gz
		files = append(files, Part{Name: r.Name, Files: 1, Bytes: int64(len(data)), Gzip: gz})
	}
	s := &Sizes{}
	for _, g := range groups {
		s.Groups = append(s.Groups, *g)
	}
	byGzip := func(p []Part) {
		sort.SliceStable(p, func(i, j int) bool {
			if p[i].Gzip != p[j].Gzip {
				return p[i].Gzip > p[j].Gzip
			}
			return p[i].Name < p[j].Name
		})
	}
	byGzip(s.Groups)
	byGzip(files)
	s.Files = files[:min(topFiles, len(files))]
	return s, nil
}

func gzipSize(data []byte) (int64, error) {
	var n countWriter
	zw, err := gzip.NewWriterLevel(&n, gzip.BestCompression)
	if err != nil {
		return 0, err
	}
	if _, err := zw.Write(data); err != nil {
		return 0, err
	}
	if err := zw.Close(); err != nil {
		return 0, err
	}
	return int64(n), nil
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

// CheckBudget fails when kernel plus initramfs exceed max bytes, naming the
// biggest contributors so the message says where to cut.
func CheckBudget(kernelBytes, initramfsBytes, max int64, s *Sizes) error {
	total := kernelBytes + initramfsBytes
	if total <= max {
		return nil
	}
	var parts []string
	for _, g := range s.Groups {
		if g.Gzip > 0 {
			parts = append(parts, fmt.Sprintf("%s %.1f MB", g.Name, float64(g.Gzip)/1e6))
		}
	}
	return fmt.Errorf("boot image is %.1f MB (kernel %.1f MB + initramfs %.1f MB gzip), over the %.1f MB budget; initramfs by contributor (gzip): %s",
		float64(total)/1e6, float64(kernelBytes)/1e6, float64(initramfsBytes)/1e6, float64(max)/1e6, strings.Join(parts, ", "))
}

// Markdown renders the size breakdown (for the summary and out/boot-bench.md).
func (s *Sizes) Markdown(kernelBytes, initramfsBytes, max int64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Boot image: kernel %.2f MB + initramfs %.2f MB gzip = %.2f MB, budget %.1f MB (the build fails above it).\n\n",
		float64(kernelBytes)/1e6, float64(initramfsBytes)/1e6, float64(kernelBytes+initramfsBytes)/1e6, float64(max)/1e6)
	b.WriteString("| initramfs contributor | files | size | gzip (each file alone) |\n| --- | ---: | ---: | ---: |\n")
	for _, g := range s.Groups {
		fmt.Fprintf(&b, "| %s | %d | %.2f MB | %.2f MB |\n", g.Name, g.Files, float64(g.Bytes)/1e6, float64(g.Gzip)/1e6)
	}
	b.WriteString("\n| biggest files | size | gzip |\n| --- | ---: | ---: |\n")
	for _, f := range s.Files {
		fmt.Fprintf(&b, "| `%s` | %.2f MB | %.2f MB |\n", f.Name, float64(f.Bytes)/1e6, float64(f.Gzip)/1e6)
	}
	return b.String()
}
