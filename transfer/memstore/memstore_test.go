package memstore_test

import (
	"testing"

	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/memstore"
	"github.com/portvol/portvol/transfer/transfertest"
)

func TestConformance(t *testing.T) {
	transfertest.Run(t, func(t *testing.T) transfer.ObjectStore { return memstore.New() })
}
