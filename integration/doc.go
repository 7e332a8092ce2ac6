// Package integration tests portvol as users run it: built by the
// Makefile, installed as a managed plugin into the real Docker engine of
// the machine (or served from a host socket in standalone mode), and driven
// only through the docker CLI. It imports nothing from the module.
//
// The tests need root and a running Docker engine. Without them they skip
// with the reason, except under CI=true, where they fail.
//
// What they leave behind: nothing. The managed plugin is installed under
// its own name (portvol-it) with its own state directory, so a portvol
// installed by the user is not touched; volumes, containers, the test image
// and the plugin are removed at the end.
//
// The two-host tests (TestMigrate, and the handoff benchmark that make
// bench-handoff runs) add a second dockerd in mount, network and UTS
// namespaces of its own, plugged into a private network (lan: a bridge in
// a namespace of its own, 10.231.X.0/24) that the machine is on too, a
// versitygw S3 server on the machine's address there, and a plugin named
// portvol-e2e-RUNID on each engine, with state under /var/tmp (names carry
// the run's id, so two runs on one machine leave each other alone).
// TestSwarm makes three such engines and a swarm of them (three
// managers); the machine's engine is not part of it and its swarm state
// is never touched. They need PostgreSQL 15 (the test image is built from
// its Debian binaries) and versitygw (make tools), and remove all of it at
// the end, also on failure.
//
// TestInstallByName sets up the same two hosts with a busybox image instead
// of PostgreSQL's, and the CNCF distribution registry (make tools) on
// 127.0.0.1 and on the machine's address on the lan; host B's dockerd
// treats that range as insecure registries. It pushes the plugin there with
// make push under the repository portvol-e2e-RUNID and installs it by name.
package integration
