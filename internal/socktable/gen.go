package socktable

// The objects socktable_bpfel.o and socktable_bpfeb.o, and their Go
// loaders, are generated from socktable.bpf.c and committed, so that
// building needs no clang. They were made with the clang below; .ci/run
// checks that the same clang makes the same bytes (go generate, then git
// diff), and, with another clang, that the Go side is unchanged.
//
// clang: Debian clang version 14.0.6, libbpf-dev 1.1.2

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" socktable socktable.bpf.c
