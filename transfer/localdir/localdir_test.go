package localdir_test

import (
	"testing"

	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/localdir"
	"github.com/portvol/portvol/transfer/transfertest"
)

func newStore(t *testing.T) *localdir.Store {
	t.Helper()
	s, err := localdir.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	transfertest.Run(t, func(t *testing.T) transfer.ObjectStore { return newStore(t) })
}
