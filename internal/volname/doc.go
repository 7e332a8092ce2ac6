// Package volname holds the one rule for volume names, which every layer
// checks: the driver (dockerd passes names through unchecked), the store's
// records (catalog, lease, snapshot manifests: a hostile store must not
// name a path outside a volume's prefix) and the command line.
//
// A name is 1 to 128 of A-Z a-z 0-9 _ . - and starts with a letter or a
// digit, so it is always exactly one path component and one store key
// segment: never empty, ".", "..", or containing a slash.
//
// It imports the standard library only, so that every package may use it.
package volname
