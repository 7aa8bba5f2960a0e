package supervisor

import (
	"bufio"
	"fmt"
	"io"

	"github.com/sirupsen/logrus"
)

// MaxLine is the longest line of a daemon's output that reaches the console;
// the rest of a longer line is dropped and the line marked with CutMark.
const MaxLine = 4096

// CutMark ends a line that was cut at MaxLine bytes.
const CutMark = " [line cut]"

// queueLen bounds the lines waiting for the console; beyond it lines are
// dropped (and counted) rather than blocking the reader, the daemon or PID 1.
const queueLen = 1024

// outLine is one line of a daemon's output on its way to the console.
type outLine struct {
	service string
	text    string
	log     logrus.FieldLogger
}

// readLines reads r until it ends, calling line for every line (without
// its newline). A line longer than max is passed on as its first max bytes
// followed by CutMark, with cut true, and the rest of it is skipped. Reading
// never stops before r ends, whatever the child writes.
func readLines(r io.Reader, max int, line func(text string, cut bool)) {
	br := bufio.NewReaderSize(r, max)
	skipping := false // inside the remainder of a cut line
	for {
		b, err := br.ReadSlice('\n')
		switch {
		case err == bufio.ErrBufferFull:
			if !skipping {
				line(string(b)+CutMark, true)
				skipping = true
			}
			continue
		case len(b) > 0 && !skipping:
			if b[len(b)-1] == '\n' {
				b = b[:len(b)-1]
			}
			line(string(b), false)
		}
		skipping = false
		if err != nil {
			return
		}
	}
}

// emit queues a line for the console without ever blocking: when the
// queue is full the line is dropped and counted.
func (s *Supervisor) emit(l outLine) {
	select {
	case s.queue <- l:
	default:
		s.dropped.Add(1)
		s.update(l.service, func(st *Status) { st.Dropped++ })
	}
}

// writeConsole writes queued lines to Output (or logs them through their
// service's logger), noting how many were dropped since the last line.
func (s *Supervisor) writeConsole() {
	for l := range s.queue {
		if n := s.dropped.Swap(0); n > 0 {
			s.writeLine(outLine{service: "init", text: fmt.Sprintf("%d daemon output lines dropped: the console is too slow", n), log: s.Log})
		}
		s.writeLine(l)
	}
}

func (s *Supervisor) writeLine(l outLine) {
	if s.Output != nil {
		fmt.Fprintf(s.Output, "%s| %s\n", l.service, l.text)
		return
	}
	l.log.Info(l.text)
}
