package config

import (
	"errors"
	"fmt"
	"io"

	"github.com/fulcrum-lb/fulcrum/lbcore/config/cfgerr"
)

// Problems lists every problem an error from Parse or Load names, one per
// entry, in the form `field.path (line N): reason`. An error that is not a
// field list (an unreadable file, a YAML syntax error) is one entry; a
// required field the file does not set at all reads `field.path (not in the
// file): reason`.
func Problems(err error) []string {
	if err == nil {
		return nil
	}
	var list *cfgerr.List
	if errors.As(err, &list) && list.Len() > 0 {
		out := make([]string, 0, list.Len())
		for _, e := range list.Errors() {
			if e.Line == 0 && e.Path != "" && e.Path != DocumentPath {
				// a field the file does not set (nor any parent of it)
				out = append(out, fmt.Sprintf("%s (not in the file): %s", e.Path, e.Msg))
				continue
			}
			out = append(out, e.Error())
		}
		return out
	}
	return []string{err.Error()}
}

// Check loads the config file at path exactly as the appliance does (Load:
// decode, defaults, validation) and writes the verdict to w: "FILE: valid",
// or every problem on its own line. It returns an error, naming the number
// of problems, when the config is invalid.
func Check(w io.Writer, path string) error {
	_, err := Load(path)
	if err == nil {
		fmt.Fprintf(w, "%s: valid\n", path)
		return nil
	}
	probs := Problems(err)
	for _, p := range probs {
		fmt.Fprintln(w, p)
	}
	if len(probs) == 1 {
		return fmt.Errorf("%s is invalid: 1 problem", path)
	}
	return fmt.Errorf("%s is invalid: %d problems", path, len(probs))
}
