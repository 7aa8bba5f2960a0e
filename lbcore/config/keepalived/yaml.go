package keepalived

import (
	"strconv"

	"go.yaml.in/yaml/v3"
)

// Small builders for the emitted YAML document: yaml.Node values, so the
// encoder does the quoting and comments can say where each part came from.

func ymap() *yaml.Node { return &yaml.Node{Kind: yaml.MappingNode} }

func yflow(n *yaml.Node) *yaml.Node { n.Style = yaml.FlowStyle; return n }

func yseq(items ...*yaml.Node) *yaml.Node {
	return &yaml.Node{Kind: yaml.SequenceNode, Content: items}
}

func ystr(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

func yint(i int) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(i)}
}

func ybool(b bool) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(b)}
}

func yset(m *yaml.Node, key string, v *yaml.Node) *yaml.Node {
	m.Content = append(m.Content, ystr(key), v)
	return m
}

func ystrs(ss []string) *yaml.Node {
	n := yflow(yseq())
	for _, s := range ss {
		n.Content = append(n.Content, ystr(s))
	}
	return n
}

// yget returns the value of key in mapping m, or nil.
func yget(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}
