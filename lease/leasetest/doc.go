// Package leasetest checks the lease protocol against any
// transfer.ObjectStore: Run is the conformance suite each store opts into
// with one line, Simulate the randomized multi-host test. It also provides
// a fake monotonic Clock and a FaultStore that loses responses and fails
// calls on purpose.
//
// It must not know any concrete store: stores are passed in.
package leasetest
