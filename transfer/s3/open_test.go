package s3_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/portvol/portvol/internal/s3test"
)

// Opening a store whose prefix already holds several objects (every
// restart of a plugin that used it) must succeed: the bucket probe lists
// one key and stops there. Found by the two-host tests, where a restarted
// plugin never reconnected ("open bucket: context canceled").
func TestS3OpenNonEmptyPrefix(t *testing.T) {
	srv := s3test.Start(t)
	opts := options(srv, srv.Prefix(t))
	st := open(t, opts)
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c/d", "e"} {
		if err := st.Put(ctx, k, bytes.NewReader([]byte(k)), int64(len(k))); err != nil {
			t.Fatal(err)
		}
	}
	for range 20 { // the failure depends on goroutine scheduling
		open(t, opts)
	}
}
