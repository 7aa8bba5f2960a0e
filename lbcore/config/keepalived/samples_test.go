package keepalived

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"go.yaml.in/yaml/v3"
)

// Debian's keepalived package ships sample configs (make deps installs it).
// Every one must import without error into well-formed YAML, the converter
// must read every statement itself (no fallback report), and the counts are
// logged: how many convert with nothing left over, and how many validate
// with a base config for the samples' addresses.
func TestDebianSamples(t *testing.T) {
	files, _ := filepath.Glob("/usr/share/doc/keepalived/samples/keepalived.conf.*")
	if len(files) == 0 {
		testkit.Missing(t, "keepalived's samples are not installed (make deps installs the keepalived package)")
	}
	base, err := os.ReadFile("testdata/samples-base.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var clean, valid, converted int
	for _, f := range files {
		res, err := ImportFile(f, "testdata/samples-base.yaml", "")
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(res.YAML, &doc); err != nil {
			t.Errorf("%s: emitted YAML does not parse: %v", f, err)
		}
		for _, is := range res.Issues {
			if strings.Contains(is.Msg, "does not read it in this place") {
				t.Errorf("%s: converter skipped a statement: %s", filepath.Base(f), is)
			}
		}
		if res.VirtualServers+res.Instances > 0 {
			converted++
		}
		if len(res.Issues) == 0 {
			clean++
		}
		_, verr := config.Parse(res.YAML)
		if verr == nil {
			valid++
		}
		t.Logf("%-45s %2d virtual servers %2d instances %3d not converted, validates: %v", filepath.Base(f), res.VirtualServers, res.Instances, len(res.Issues), verr == nil)
		if testing.Verbose() && verr != nil {
			for _, p := range config.Problems(verr) {
				t.Logf("    %s", p)
			}
		}
	}
	_ = base
	t.Logf("%d samples: %d converted something, %d with nothing left over, %d validate with testdata/samples-base.yaml", len(files), converted, clean, valid)
}
