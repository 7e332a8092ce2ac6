package lease_test

import (
	"testing"

	"github.com/portvol/portvol/lease/leasetest"
	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/memstore"
)

func TestMemstore(t *testing.T) {
	leasetest.Run(t, func(*testing.T) transfer.ObjectStore { return memstore.New() })
}
