package nldump

import (
	"errors"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestRetry(t *testing.T) {
	calls := 0
	got, err := Retry(func() ([]int, error) {
		calls++
		if calls < 3 {
			return []int{1}, netlink.ErrDumpInterrupted // partial
		}
		return []int{1, 2, 3}, nil
	})
	if err != nil || len(got) != 3 || calls != 3 {
		t.Fatalf("got %v, %v after %d calls; want the complete dump on the 3rd", got, err, calls)
	}

	calls = 0
	_, err = Retry(func() (int, error) { calls++; return 0, netlink.ErrDumpInterrupted })
	if !errors.Is(err, netlink.ErrDumpInterrupted) || calls != Tries {
		t.Fatalf("always interrupted: %v after %d calls, want ErrDumpInterrupted after %d", err, calls, Tries)
	}

	calls = 0
	other := errors.New("no such device")
	_, err = Retry(func() (int, error) { calls++; return 0, other })
	if err != other || calls != 1 {
		t.Fatalf("other error: %v after %d calls, want it at once", err, calls)
	}
}
