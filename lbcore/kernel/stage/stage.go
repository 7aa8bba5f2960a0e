// Package stage is the one reconcile contract of the kernel back-ends
// (addresses, nftables tables, IPVS, ...): each makes its part of the kernel
// match a desired state of its own type, all or nothing, and hands back how
// to undo that. Run applies a list of stages in order with one rollback
// path: when one fails, the ones already applied are undone in reverse order.
//
// Adding a back-end is implementing Stage for its desired-state type and
// adding one Bind to the caller's list.
package stage

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Change is what one stage did.
type Change struct {
	// Summary says what changed, for logs ("" when nothing did).
	Summary string
	// Undo puts the state from before the apply back (nil: nothing to undo).
	Undo func() error
	// Detail is the back-end's own record (an *ipvs.Plan, addrs.Change, ...).
	Detail any
}

// Stage makes one part of the kernel match want. On error the part is as it
// was before the call (or the error says the back-end's own undo failed).
type Stage[W any] interface {
	Apply(ctx context.Context, want W) (Change, error)
}

// Step is a stage bound to its desired state.
type Step struct {
	Name  string
	Apply func(ctx context.Context) (Change, error)
}

// Bind binds a stage to the state it must reach.
func Bind[W any](name string, s Stage[W], want W) Step {
	return Step{Name: name, Apply: func(ctx context.Context) (Change, error) { return s.Apply(ctx, want) }}
}

// Result lists the changes of a successful Run, by step name.
type Result map[string]Change

// String summarises the steps that changed something.
func (r Result) String() string {
	var parts []string
	for name, c := range r {
		if c.Summary != "" {
			parts = append(parts, name+": "+c.Summary)
		}
	}
	if len(parts) == 0 {
		return "no changes"
	}
	return strings.Join(parts, "; ")
}

// Run applies steps in order. If one fails (or ctx ends between steps), the
// steps already applied are undone in reverse order and the error says what
// failed and whether everything was put back.
func Run(ctx context.Context, steps ...Step) (Result, error) {
	res := Result{}
	var done []Step
	for _, s := range steps {
		err := ctx.Err()
		var c Change
		if err == nil {
			c, err = s.Apply(ctx)
		}
		if err != nil {
			err = fmt.Errorf("%s: %w", s.Name, err)
			return nil, undo(err, done, res)
		}
		res[s.Name] = c
		done = append(done, s)
	}
	return res, nil
}

func undo(cause error, done []Step, res Result) error {
	var errs []error
	for i := len(done) - 1; i >= 0; i-- {
		if u := res[done[i].Name].Undo; u != nil {
			if err := u(); err != nil {
				errs = append(errs, fmt.Errorf("undo %s: %w", done[i].Name, err))
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(append([]error{cause}, errs...)...)
	}
	if len(done) == 0 {
		return fmt.Errorf("%w (nothing changed)", cause)
	}
	return fmt.Errorf("%w (earlier steps undone; kernel as before)", cause)
}
