// Command itercount checks two facts that the design of a cheaper
// "sockdump --all-netns" rests on (docs/performance.md, "Many network
// namespaces"), on the running kernel:
//
//   - which BPF iterator targets load here (a two-instruction program
//     each);
//
//   - what an iter/tcp (or iter/udp) iterator lists when opened in a given
//     network namespace, and what one walk costs in CPU time: it counts
//     the sockets the iterator's program is called for, by the netns
//     inode of each, so that sockets of other namespaces would show.
//
//     sudo go run ./examples/bench/itercount [-proto tcp|udp] [-runs N] [NETNS_PATH...]
//
// With no path, the current namespace. Needs root (BPF, setns).
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

func main() {
	proto := flag.String("proto", "tcp", "the iterator: tcp or udp")
	runs := flag.Int("runs", 5, "walks to time, at most 1000")
	flag.Parse()
	if err := run(*proto, min(max(*runs, 1), 1000), flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "itercount:", err)
		os.Exit(1)
	}
}

func run(proto string, runs int, paths []string) error {
	_ = rlimit.RemoveMemlock()
	for _, target := range []string{"tcp", "udp", "unix", "task", "task_file", "bpf_map", "bpf_map_elem", "bpf_sk_storage_map", "sockmap"} {
		p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Type: ebpf.Tracing, AttachType: ebpf.AttachTraceIter, AttachTo: target, License: "GPL",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		})
		if err == nil {
			p.Close()
			fmt.Printf("iter/%s: loads\n", target)
		} else {
			fmt.Printf("iter/%s: %v\n", target, err)
		}
	}
	prog, err := countProg(proto)
	if err != nil {
		return err
	}
	defer prog.Close()
	it, err := link.AttachIter(link.IterOptions{Program: prog})
	if err != nil {
		return err
	}
	defer it.Close()
	if len(paths) == 0 {
		paths = []string{""}
	}
	for _, path := range paths {
		if err := inNS(path, func() error { return walk(it, path, runs) }); err != nil {
			return err
		}
	}
	return nil
}

// countProg writes, for every socket the iterator is called for, the
// inode of its network namespace (sk_common->skc_net.net->ns.inum).
func countProg(proto string) (*ebpf.Program, error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, err
	}
	off := func(typ string, path ...string) (int16, error) {
		var s *btf.Struct
		if err := spec.TypeByName(typ, &s); err != nil {
			return 0, err
		}
		o := uint32(0)
		for _, name := range path {
			found := false
			for _, m := range s.Members {
				if m.Name == name {
					o += m.Offset.Bytes()
					found = true
					if next, ok := btf.UnderlyingType(m.Type).(*btf.Struct); ok {
						s = next
					}
					break
				}
			}
			if !found {
				return 0, fmt.Errorf("%s: no member %s", typ, name)
			}
		}
		return int16(o), nil
	}
	netOff, err := off("sock_common", "skc_net", "net")
	if err != nil {
		return nil, err
	}
	inumOff, err := off("net", "ns", "inum")
	if err != nil {
		return nil, err
	}
	ctxSk := int16(8) // bpf_iter__tcp and bpf_iter__udp: meta, then the socket
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R7, asm.R6, ctxSk, asm.DWord),
		asm.JEq.Imm(asm.R7, 0, "out"),
		// r3 = sk->skc_net.net, through bpf_probe_read_kernel.
		asm.Mov.Reg(asm.R1, asm.R10), asm.Add.Imm(asm.R1, -8),
		asm.Mov.Imm(asm.R2, 8),
		asm.Mov.Reg(asm.R3, asm.R7), asm.Add.Imm(asm.R3, int32(netOff)),
		asm.FnProbeReadKernel.Call(),
		asm.LoadMem(asm.R3, asm.R10, -8, asm.DWord),
		asm.Add.Imm(asm.R3, int32(inumOff)),
		asm.Mov.Reg(asm.R1, asm.R10), asm.Add.Imm(asm.R1, -16),
		asm.Mov.Imm(asm.R2, 4),
		asm.FnProbeReadKernel.Call(),
		asm.LoadMem(asm.R1, asm.R6, 0, asm.DWord), // meta
		asm.LoadMem(asm.R1, asm.R1, 0, asm.DWord), // meta->seq
		asm.Mov.Reg(asm.R2, asm.R10), asm.Add.Imm(asm.R2, -16),
		asm.Mov.Imm(asm.R3, 4),
		asm.FnSeqWrite.Call(),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
		asm.Return(),
	}
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.Tracing, AttachType: ebpf.AttachTraceIter, AttachTo: proto,
		License: "GPL", Instructions: insns,
	})
}

// inNS runs fn on a locked thread in the namespace at path ("" for the
// current one); the thread is dropped after.
func inNS(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

func walk(it *link.Iter, path string, runs int) error {
	var counts map[uint32]int
	var cpu []time.Duration
	for range runs {
		r0 := threadCPU()
		f, err := it.Open()
		if err != nil {
			return err
		}
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			return err
		}
		cpu = append(cpu, threadCPU()-r0)
		counts = map[uint32]int{}
		for i := 0; i+4 <= len(b); i += 4 {
			counts[binary.NativeEndian.Uint32(b[i:])]++
		}
	}
	sort.Slice(cpu, func(i, j int) bool { return cpu[i] < cpu[j] })
	var st unix.Stat_t
	name := path
	if name == "" {
		name = "/proc/self/ns/net"
	}
	_ = unix.Stat(name, &st)
	fmt.Printf("%s (net:[%d]): median %.1f ms CPU per walk (%d runs); listed by namespace:", name, st.Ino,
		float64(cpu[len(cpu)/2].Microseconds())/1000, runs)
	for ns, n := range counts {
		fmt.Printf(" net:[%d]=%d", ns, n)
	}
	fmt.Println()
	return nil
}

// threadCPU is the CPU time of the calling thread (the read of an
// iterator runs in it, in the kernel).
func threadCPU() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_THREAD, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
