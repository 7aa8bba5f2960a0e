// Package console is the serial console's login and line editor, and the
// lbctl command set (show, member, ha, config, reboot, poweroff, shell) over
// the local API.
package console

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Term switches a terminal between the modes the console needs.
type Term struct {
	fd    int
	saved *unix.Termios
}

// OpenTerm remembers fd's current (cooked) mode. A fd that is not a
// terminal gives a Term whose mode changes do nothing.
func OpenTerm(fd int) *Term {
	t := &Term{fd: fd}
	if st, err := unix.IoctlGetTermios(fd, unix.TCGETS); err == nil {
		t.saved = st
	}
	return t
}

// Raw turns off canonical input, echo and signal keys (the line editor does
// them itself) but keeps output processing, so "\n" still ends a line with
// CR LF on the serial line.
func (t *Term) Raw() error {
	if t.saved == nil {
		return nil
	}
	st := *t.saved
	st.Lflag &^= unix.ECHO | unix.ICANON | unix.ISIG | unix.IEXTEN
	st.Iflag &^= unix.ICRNL | unix.INLCR | unix.IXON
	st.Cc[unix.VMIN] = 1
	st.Cc[unix.VTIME] = 0
	return t.set(&st)
}

// Restore puts back the mode the terminal had when opened.
func (t *Term) Restore() error {
	if t.saved == nil {
		return nil
	}
	return t.set(t.saved)
}

func (t *Term) set(st *unix.Termios) error {
	// TCSETS, not TCSETSF: input typed ahead (a test's next command) must
	// survive the mode change.
	if err := unix.IoctlSetTermios(t.fd, unix.TCSETS, st); err != nil {
		return fmt.Errorf("terminal mode: %w", err)
	}
	return nil
}
