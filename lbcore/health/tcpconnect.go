package health

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"syscall"
)

// connectOnly is the TCP check's connect: a non-blocking socket waited on
// through the runtime poller, closed with a reset as soon as it is
// established. It does the least work a connect check can (socket, bind,
// connect, one poll registration, SO_ERROR, linger, close) because at 10 000
// members a second it is most of what the checker does; net.Dialer adds
// resolver, keep-alive, TCP_NODELAY and address look-ups around the same
// syscalls.
func (b *base) connectOnly(ctx context.Context, addr netip.AddrPort) error {
	family, sa := sockaddr(addr)
	var fd = -1
	err := b.env(func() error {
		var err error
		fd, err = syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, syscall.IPPROTO_TCP)
		if err != nil {
			return os.NewSyscallError("socket", err)
		}
		if b.src.IsValid() {
			_, local := sockaddr(netip.AddrPortFrom(b.src, 0))
			if err := syscall.Bind(fd, local); err != nil {
				return os.NewSyscallError("bind", err)
			}
		}
		if err := syscall.Connect(fd, sa); err != nil && err != syscall.EINPROGRESS {
			return os.NewSyscallError("connect", err)
		}
		return nil
	})
	if err != nil {
		if fd >= 0 {
			syscall.Close(fd)
		}
		return err
	}
	f := os.NewFile(uintptr(fd), "health-check") // non-blocking: registered with the poller
	defer func() {
		syscall.SetsockoptLinger(fd, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 0})
		f.Close()
	}()
	if dl, ok := ctx.Deadline(); ok {
		f.SetWriteDeadline(dl)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	// RawConn.Write clears pending readiness before calling us, so look at
	// the socket's state first and only then wait: a connect that finished
	// before this point is seen here, a later one wakes the poller.
	var connErr error
	werr := rc.Write(func(fd uintptr) bool {
		n, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_ERROR)
		if err != nil {
			connErr = os.NewSyscallError("getsockopt", err)
			return true
		}
		switch e := syscall.Errno(n); e {
		case syscall.EINPROGRESS, syscall.EALREADY, syscall.EINTR:
			return false
		case 0, syscall.EISCONN:
			// Still connecting, or a spurious wake-up: connected only
			// once the peer is known.
			if _, err := syscall.Getpeername(int(fd)); err != nil {
				return false
			}
			return true
		default:
			connErr = os.NewSyscallError("connect", e)
			return true
		}
	})
	if werr != nil {
		if errors.Is(werr, os.ErrDeadlineExceeded) && ctx.Err() == nil {
			return context.DeadlineExceeded
		}
		return werr
	}
	return connErr
}

func sockaddr(ap netip.AddrPort) (int, syscall.Sockaddr) {
	a := ap.Addr().Unmap()
	if a.Is4() {
		return syscall.AF_INET, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	}
	return syscall.AF_INET6, &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
}
