// Package archtest holds no code: its test enforces the package boundaries
// of DESIGN.md §1 (who may import whom), the job depguard does in larger
// projects, so that `go test ./...` and `make lint` fail when a change
// crosses a boundary.
package archtest
