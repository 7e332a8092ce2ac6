package btrfs

import (
	"testing"

	"github.com/portvol/portvol/localcopy"
	"github.com/portvol/portvol/localcopy/localcopytest"
)

func TestConformance(t *testing.T) {
	c := shared(t)
	localcopytest.Run(t, func(*testing.T) localcopy.Copies { return c })
}
