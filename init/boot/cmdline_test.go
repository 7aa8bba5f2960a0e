package boot

import "testing"

func TestParseCmdline(t *testing.T) {
	c := ParseCmdline(`console=ttyS0,115200 quiet fulcrum.config=/etc/fulcrum/lb2.yaml x="a b"` + "\n")
	for k, want := range map[string]string{"console": "ttyS0,115200", "quiet": "", "fulcrum.config": "/etc/fulcrum/lb2.yaml", "x": "a b"} {
		if got, ok := c[k]; !ok || got != want {
			t.Errorf("%s = %q (present %v), want %q", k, got, ok, want)
		}
	}
	if len(c) != 4 {
		t.Errorf("got %d params %v, want 4", len(c), c)
	}
}
