package ipvs

import (
	"fmt"
	"sort"
	"syscall"

	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvsnl"
	mobyipvs "github.com/moby/ipvs"
)

// fakeKernel behaves like the kernel's IPVS netlink API as far as the
// reconciler can tell: keyed services and destinations, EEXIST/ESRCH/ENOENT
// errors, the HASHED flag set on every service, and global timeouts.
type fakeKernel struct {
	svcs   map[ServiceKey]*fakeSvc
	cfg    mobyipvs.Config
	calls  []string // mutating calls, in order
	failAt int      // fail the failAt-th mutating call (1-based); 0 = never
	n      int
	// Reads, for tests of how much an apply reads.
	serviceReads, destReads int
}

type fakeSvc struct {
	s     mobyipvs.Service
	dests map[DestKey]*mobyipvs.Destination
}

func newFakeKernel() *fakeKernel {
	return &fakeKernel{svcs: map[ServiceKey]*fakeSvc{}, cfg: mobyipvs.Config{TimeoutTCP: 900e9, TimeoutTCPFin: 120e9, TimeoutUDP: 300e9}}
}

func (f *fakeKernel) key(s *mobyipvs.Service) ServiceKey { return serviceFromKernel(s).Key }

func (f *fakeKernel) mutate(what string) error {
	f.n++
	f.calls = append(f.calls, what)
	if f.failAt != 0 && f.n == f.failAt {
		return fmt.Errorf("injected failure at %s: %w", what, syscall.ENOMEM)
	}
	return nil
}

func (f *fakeKernel) GetServices() ([]*mobyipvs.Service, error) {
	f.serviceReads++
	var out []*mobyipvs.Service
	for _, s := range f.svcs {
		c := s.s
		out = append(out, &c)
	}
	sort.Slice(out, func(i, j int) bool { return f.key(out[i]).less(f.key(out[j])) })
	return out, nil
}

func (f *fakeKernel) GetDestinations(s *mobyipvs.Service) ([]*mobyipvs.Destination, error) {
	f.destReads++
	fs, ok := f.svcs[f.key(s)]
	if !ok {
		return nil, syscall.ESRCH
	}
	var out []*mobyipvs.Destination
	for _, d := range fs.dests {
		c := *d
		out = append(out, &c)
	}
	return out, nil
}

func (f *fakeKernel) NewService(s *mobyipvs.Service) error {
	k := f.key(s)
	if err := f.mutate("new-service " + k.String()); err != nil {
		return err
	}
	if _, ok := f.svcs[k]; ok {
		return syscall.EEXIST
	}
	c := *s
	c.Flags |= flagHashed
	f.svcs[k] = &fakeSvc{s: c, dests: map[DestKey]*mobyipvs.Destination{}}
	return nil
}

func (f *fakeKernel) UpdateService(s *mobyipvs.Service) error {
	k := f.key(s)
	if err := f.mutate("update-service " + k.String()); err != nil {
		return err
	}
	fs, ok := f.svcs[k]
	if !ok {
		return syscall.ESRCH
	}
	c := *s
	c.Flags |= flagHashed
	fs.s = c
	return nil
}

func (f *fakeKernel) DelService(s *mobyipvs.Service) error {
	k := f.key(s)
	if err := f.mutate("del-service " + k.String()); err != nil {
		return err
	}
	if _, ok := f.svcs[k]; !ok {
		return syscall.ESRCH
	}
	delete(f.svcs, k)
	return nil
}

func (f *fakeKernel) destOp(op string, s *mobyipvs.Service, d *mobyipvs.Destination) (*fakeSvc, DestKey, error) {
	k := f.key(s)
	dk := destFromKernel(d).Key
	if err := f.mutate(fmt.Sprintf("%s %s -> %s", op, k, dk)); err != nil {
		return nil, dk, err
	}
	fs, ok := f.svcs[k]
	if !ok {
		return nil, dk, syscall.ESRCH
	}
	return fs, dk, nil
}

func (f *fakeKernel) NewDestination(s *mobyipvs.Service, d *mobyipvs.Destination) error {
	fs, dk, err := f.destOp("new-dest", s, d)
	if err != nil {
		return err
	}
	if _, ok := fs.dests[dk]; ok {
		return syscall.EEXIST
	}
	c := *d
	fs.dests[dk] = &c
	return nil
}

func (f *fakeKernel) UpdateDestination(s *mobyipvs.Service, d *mobyipvs.Destination) error {
	fs, dk, err := f.destOp("update-dest", s, d)
	if err != nil {
		return err
	}
	old, ok := fs.dests[dk]
	if !ok {
		return syscall.ENOENT
	}
	c := *d
	c.ActiveConnections, c.InactiveConnections = old.ActiveConnections, old.InactiveConnections
	fs.dests[dk] = &c
	return nil
}

func (f *fakeKernel) DelDestination(s *mobyipvs.Service, d *mobyipvs.Destination) error {
	fs, dk, err := f.destOp("del-dest", s, d)
	if err != nil {
		return err
	}
	if _, ok := fs.dests[dk]; !ok {
		return syscall.ENOENT
	}
	delete(fs.dests, dk)
	return nil
}

func (f *fakeKernel) GetConfig() (*mobyipvs.Config, error) { c := f.cfg; return &c, nil }

func (f *fakeKernel) SetConfig(c *mobyipvs.Config) error {
	if err := f.mutate("set-config"); err != nil {
		return err
	}
	if c.TimeoutTCP != 0 {
		f.cfg.TimeoutTCP = c.TimeoutTCP
	}
	if c.TimeoutTCPFin != 0 {
		f.cfg.TimeoutTCPFin = c.TimeoutTCPFin
	}
	if c.TimeoutUDP != 0 {
		f.cfg.TimeoutUDP = c.TimeoutUDP
	}
	return nil
}

// setActive sets a destination's active connection count.
func (f *fakeKernel) setActive(sk ServiceKey, dk DestKey, n int) {
	f.svcs[sk].dests[dk].ActiveConnections = n
}

// dump is a comparable snapshot of the whole fake kernel.
func (f *fakeKernel) dump() string {
	st := NewState()
	for k, s := range f.svcs {
		c := serviceFromKernel(&s.s)
		for _, d := range s.dests {
			dd := destFromKernel(d)
			c.Dests[dd.Key] = dd
		}
		st.Services[k] = c
	}
	out := fmt.Sprintf("timeouts %v/%v/%v\n", f.cfg.TimeoutTCP, f.cfg.TimeoutTCPFin, f.cfg.TimeoutUDP)
	for _, s := range st.SortedServices() {
		out += fmt.Sprintf("%s flags=%#x nm=%#x\n", s.describe(), s.Flags, s.Netmask)
		for _, d := range s.SortedDests() {
			out += fmt.Sprintf("  %s w=%d fwd=%d active=%d\n", d.Key, d.Weight, d.Fwd, d.Active)
		}
	}
	return out
}

// batchingFake is a fakeKernel that takes batches the way the kernel takes
// a sendmsg of many messages: every change of a chunk runs, failed or not,
// and no chunk is sent after one with a failure.
type batchingFake struct {
	*fakeKernel
	chunk   int
	batches int
}

func (b *batchingFake) Batch(changes []ipvsnl.Change) (ipvsnl.BatchResult, error) {
	res := ipvsnl.BatchResult{Errs: make([]error, len(changes))}
	for start := 0; start < len(changes); start += b.chunk {
		b.batches++
		end := min(start+b.chunk, len(changes))
		failed := false
		for i := start; i < end; i++ {
			if err := applyChange(b.fakeKernel, changes[i]); err != nil {
				res.Errs[i] = err
				failed = true
			}
		}
		if failed {
			for i := end; i < len(changes); i++ {
				res.Errs[i] = ipvsnl.ErrNotSent
			}
			break
		}
	}
	return res, nil
}
