package scenario

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"
)

// Report collects measurements of one lab run (a section of the lab report).
type Report struct {
	Section string

	mu    sync.Mutex
	rows  []row
	notes []string
	start time.Time
}

type row struct{ scenario, measure, value string }

// NewReport starts a report section.
func NewReport(section string) *Report {
	return &Report{Section: section, start: time.Now()}
}

// Add records one measurement.
func (r *Report) Add(scenario, measure, format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rows = append(r.rows, row{scenario, measure, fmt.Sprintf(format, args...)})
}

// Note adds a line of prose under the table.
func (r *Report) Note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// Markdown renders the section.
func (r *Report) Markdown() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "## %s\n\n", r.Section)
	fmt.Fprintf(&b, "Run %s, %s wall time, on %s (QEMU TCG, %d host CPUs).\n\n",
		r.start.UTC().Format(time.RFC3339), time.Since(r.start).Round(time.Second), hostName(), runtime.NumCPU())
	b.WriteString("| scenario | measure | value |\n| --- | --- | --- |\n")
	for _, x := range r.rows {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", x.scenario, x.measure, x.value)
	}
	if len(r.notes) > 0 {
		b.WriteString("\n")
		for _, n := range r.notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

func hostName() string {
	h, err := os.Hostname()
	if err != nil {
		return "?"
	}
	return h
}

const reportHeader = "# Fulcrum lab report\n\nWritten by the QEMU scenario tests (`go test ./qemu`, part of `make test`). " +
	"Each section is replaced by the latest run of the tests that write it.\n"

// DefaultReportPath is out/lab-report.md next to the image: $FULCRUM_OUT,
// else out/ at the module root.
func DefaultReportPath() string {
	dir := os.Getenv("FULCRUM_OUT")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", "..", "out")
	}
	return filepath.Join(dir, "lab-report.md")
}

// WriteTo puts the section into the report file at path, replacing an older
// version of the same section and keeping the others.
func (r *Report) WriteTo(path string) error {
	sections := map[string]string{}
	if old, err := os.ReadFile(path); err == nil {
		for _, part := range strings.Split(string(old), "\n## ")[1:] {
			title, _, _ := strings.Cut(part, "\n")
			sections[title] = "## " + strings.TrimRight(part, "\n") + "\n"
		}
	}
	sections[r.Section] = r.Markdown()
	titles := make([]string, 0, len(sections))
	for t := range sections {
		titles = append(titles, t)
	}
	sort.Strings(titles)
	var b strings.Builder
	b.WriteString(reportHeader)
	for _, t := range titles {
		b.WriteString("\n" + sections[t])
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("lab report: %w", err)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("lab report: %w", err)
	}
	return nil
}
