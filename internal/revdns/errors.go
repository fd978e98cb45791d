package revdns

import (
	"errors"
	"fmt"
	"time"
)

// Failures of a reverse lookup. Their messages are what sockresolve writes
// in remote.host_error, so they are meant for the people who read it.
var (
	// ErrNXDomain: the server says the reverse name does not exist.
	ErrNXDomain = errors.New("no PTR record (NXDOMAIN)")
	// ErrEmptyAnswer: the name exists but has no PTR record. The text is
	// Metricbeat's, so that a query on its host_error finds ours.
	ErrEmptyAnswer = errors.New("empty dns response")
	// ErrNotFound: no PTR record, where the system resolver does not say
	// whether the name did not exist or had no PTR record.
	ErrNotFound = errors.New("no PTR record (NXDOMAIN or empty answer)")
	// ErrRefused: the server refused to answer.
	ErrRefused = errors.New("server refused the query (REFUSED)")
	// ErrServFail: the server failed to find an answer.
	ErrServFail = errors.New("server failure (SERVFAIL)")
	// ErrMisbehaving: the system resolver got a server failure, a refusal
	// or an answer that made no sense, without saying which.
	ErrMisbehaving = errors.New("server failure (SERVFAIL, REFUSED or a malformed answer)")
	// ErrCancelled: the lookup was abandoned before an answer came.
	ErrCancelled = errors.New("lookup cancelled")
)

// TimeoutError is a lookup that got no answer in time.
type TimeoutError struct {
	After time.Duration // the timeout
	// Queued is set when the query was never sent because every worker
	// was busy for the whole time.
	Queued bool
}

func (e *TimeoutError) Error() string {
	if e.Queued {
		return fmt.Sprintf("timed out after %s waiting for a free lookup worker", e.After)
	}
	return fmt.Sprintf("timed out after %s", e.After)
}

// RcodeError is an answer with an error code other than NXDOMAIN,
// SERVFAIL or REFUSED.
type RcodeError struct {
	Rcode string // its mnemonic, such as "NOTIMP"
}

func (e *RcodeError) Error() string { return fmt.Sprintf("server error (%s)", e.Rcode) }

// NameError is a PTR answer whose name is not a valid host name. The name
// itself is left out on purpose: it is untrusted.
type NameError struct {
	Reason string // what is wrong, such as "label 1 longer than 63 bytes"
}

func (e *NameError) Error() string { return "invalid host name in answer: " + e.Reason }

// MalformedError is an answer that does not parse or does not answer the
// question asked.
type MalformedError struct {
	Reason string
}

func (e *MalformedError) Error() string { return "malformed answer: " + e.Reason }

// NetworkError is a failure to talk to the server at all.
type NetworkError struct {
	Err error
}

func (e *NetworkError) Error() string { return "cannot query the DNS server: " + e.Err.Error() }

// Unwrap returns the cause.
func (e *NetworkError) Unwrap() error { return e.Err }
