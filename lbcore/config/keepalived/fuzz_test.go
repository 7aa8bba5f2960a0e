package keepalived

import (
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"

	"go.yaml.in/yaml/v3"
)

// FuzzParse feeds arbitrary main and include files to the importer: it must
// never panic, must stay within its limits (include loops, expanding
// definitions, deep nesting), and whatever it emits must be YAML.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/pair/*.conf")
	more, _ := filepath.Glob("testdata/pair/conf.d/*.conf")
	for _, s := range append(seeds, more...) {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b, []byte("include main.conf\n"))
		}
	}
	f.Add([]byte("include inc.conf\ninclude inc.conf\n$A=$A$A\nx $A\n"), []byte("include inc.conf\ninclude main.conf\n}"))
	f.Add([]byte("virtual_server group G {\nreal_server 10.0.0.1 80 {\nHTTP_GET {\nurl {\n}}}}\nvirtual_server_group G {\n10.0.0.1-255 80\nfe80::1-ffff 80\n}"), []byte("@x {\n"))
	f.Add([]byte("vrrp_sync_group G { group { A A B } }\nvrrp_instance A { virtual_router_id 1 virtual_ipaddress { ::1 dev } track_interface { e weight x } }"), []byte(""))
	f.Fuzz(func(t *testing.T, main, inc []byte) {
		fsys := fstest.MapFS{"main.conf": {Data: main}, "inc.conf": {Data: inc}}
		res, err := Import(fsys, "main.conf", nil, "", Options{ConfigID: "x"})
		if err != nil {
			return
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(res.YAML, &doc); err != nil {
			t.Fatalf("emitted YAML does not parse: %v\n%s", err, res.YAML)
		}
	})
}
