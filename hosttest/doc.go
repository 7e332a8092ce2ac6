// Package hosttest moves volumes between hosts the way users would see it,
// without Docker: it builds the portvol binary, runs two `portvol serve`
// processes in standalone mode — each with its own state directory, host
// id, mount root and socket, both on one store (a local directory, or a
// real S3 server on 127.0.0.1) — and drives them only through the plugin
// protocol on their sockets and the portvol command line. It kills them
// with SIGKILL to play a host that dies.
//
// The tests need root (portvol bind-mounts volumes). Without it they skip
// with the reason, except under CI=true, where they fail.
//
// It contains only tests and imports nothing from the module but the
// S3 test server helper.
package hosttest
