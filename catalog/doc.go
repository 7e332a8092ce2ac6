// Package catalog keeps the store's list of volumes: one write-once record
// per volume, volumes/<name>/volume.json, holding the options it was created
// with, when and by which host. Because the plugin's scope is global, this
// record — not any host's local state — says whether a volume exists.
//
// Record format (JSON, version 1):
//
//	{"version":1,"name":"db","options":{"snapshot_interval":"5m0s","takeover":"manual"},
//	 "created_at":"2026-11-27T07:00:00Z","created_by":"hostA-1a2b3c4d"}
//
// Records are created with a conditional write (create-if-absent), so two
// hosts creating the same name at once agree on one record, and they are
// never rewritten. Removal moves them to the trash (see MoveToTrash).
//
// It owns: the record's encoding and key, creating, reading and listing
// records, and the trash (trash.go): moving a removed volume's objects to
// trash/<name>/<removal time>/<original key> for a grace period, bringing
// them back, purging old entries. Which keys belong to a volume is the
// caller's to say. It must not know: Docker, option semantics (the driver
// parses and normalises options before they reach a record), leases or
// snapshots. It imports the transfer root package only.
package catalog
