package stage_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/stage"
)

// fake is a back-end holding one value.
type fake struct {
	val  string
	fail bool
	log  *[]string
}

func (f *fake) Apply(_ context.Context, want string) (stage.Change, error) {
	if f.fail {
		return stage.Change{}, errors.New("refused")
	}
	old := f.val
	f.val = want
	*f.log = append(*f.log, "apply "+want)
	return stage.Change{Summary: old + "->" + want, Undo: func() error {
		*f.log = append(*f.log, "undo "+want)
		f.val = old
		return nil
	}}, nil
}

func TestRunAppliesInOrderAndUndoesInReverseOnFailure(t *testing.T) {
	var log []string
	a, b, c := &fake{val: "a0", log: &log}, &fake{val: "b0", log: &log}, &fake{val: "c0", log: &log, fail: true}
	_, err := stage.Run(context.Background(), stage.Bind[string]("a", a, "a1"), stage.Bind[string]("b", b, "b1"), stage.Bind[string]("c", c, "c1"))
	if err == nil || !strings.Contains(err.Error(), "c: refused") || !strings.Contains(err.Error(), "undone") {
		t.Fatalf("err = %v", err)
	}
	if got := strings.Join(log, ","); got != "apply a1,apply b1,undo b1,undo a1" {
		t.Fatalf("order = %s", got)
	}
	if a.val != "a0" || b.val != "b0" {
		t.Fatalf("state after rollback: %s %s", a.val, b.val)
	}
	c.fail = false
	res, err := stage.Run(context.Background(), stage.Bind[string]("a", a, "a1"), stage.Bind[string]("c", c, "c1"))
	if err != nil || res["a"].Summary != "a0->a1" || res["c"].Summary != "c0->c1" {
		t.Fatalf("res %v err %v", res, err)
	}
}

func TestRunStopsWhenTheContextEnds(t *testing.T) {
	var log []string
	a := &fake{val: "a0", log: &log}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := stage.Run(ctx, stage.Bind[string]("a", a, "a1")); !errors.Is(err, context.Canceled) || a.val != "a0" {
		t.Fatalf("err %v val %s", err, a.val)
	}
}
