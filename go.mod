module github.com/sockpipe/sockpipe

go 1.26.0

require (
	github.com/google/go-cmp v0.7.0
	github.com/json-iterator/go v1.1.12
	github.com/mdlayher/netlink v1.11.2
	github.com/miekg/dns v1.1.73
	github.com/prometheus/procfs v0.23.0
	github.com/rogpeppe/go-internal v1.16.0
	go.yaml.in/yaml/v3 v3.0.6
	golang.org/x/net v0.62.0
	golang.org/x/sys v0.50.0
)

require gopkg.in/yaml.v3 v3.0.1 // indirect

require (
	github.com/cilium/ebpf v0.22.0
	github.com/mdlayher/socket v0.6.0 // indirect
	github.com/modern-go/concurrent v0.0.0-20180228061459-e0a39a4cb421 // indirect
	github.com/modern-go/reflect2 v1.0.2 // indirect
	golang.org/x/sync v0.24.0 // indirect
	golang.org/x/tools v0.48.0 // indirect
)
