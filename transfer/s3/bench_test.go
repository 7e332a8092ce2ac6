package s3_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/url"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/portvol/portvol/internal/s3test"
	"github.com/portvol/portvol/transfer/s3"
)

// BenchmarkS3 moves 1 GiB through transfer/s3 and through a plain
// minio-go client with default options, against the same local versitygw
// in the same run. Compare the MB/s of ours/* with minio-go/*:
//
//	go test -bench . -run '^$' -benchtime 3x ./transfer/s3/
func BenchmarkS3(b *testing.B) {
	const size = 1 << 30
	srv := s3test.Start(b)
	data := randomBytes(size)
	ctx := context.Background()

	u, _ := url.Parse(srv.Endpoint)
	plain, err := minio.New(u.Host, &minio.Options{
		Creds:  credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, ""),
		Region: srv.Region,
	})
	if err != nil {
		b.Fatal(err)
	}
	ours := open(b, options(srv, "bench/"))
	multipart := options(srv, "bench/")
	multipart.MaxSinglePut = 64 << 20
	oursMultipart := open(b, multipart)

	for _, v := range []struct {
		name string
		put  func(key string) error
		get  func(key string) (io.ReadCloser, error)
	}{
		{"minio-go",
			func(key string) error {
				_, err := plain.PutObject(ctx, srv.Bucket, "bench/"+key, bytes.NewReader(data), size, minio.PutObjectOptions{})
				return err
			},
			func(key string) (io.ReadCloser, error) {
				return plain.GetObject(ctx, srv.Bucket, "bench/"+key, minio.GetObjectOptions{})
			}},
		{"ours",
			func(key string) error { return ours.Put(ctx, key, bytes.NewReader(data), size) },
			func(key string) (io.ReadCloser, error) { return ours.Get(ctx, key, 0, -1) }},
		{"ours-multipart-64MiB",
			func(key string) error { return oursMultipart.Put(ctx, key, bytes.NewReader(data), size) },
			func(key string) (io.ReadCloser, error) { return oursMultipart.Get(ctx, key, 0, -1) }},
	} {
		key := fmt.Sprintf("%s-1GiB", v.name)
		b.Run(v.name+"/put", func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				if err := v.put(key); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(v.name+"/get", func(b *testing.B) {
			b.SetBytes(size)
			buf := make([]byte, 1<<20)
			for b.Loop() {
				rc, err := v.get(key)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.CopyBuffer(io.Discard, rc, buf)
				rc.Close()
				if err != nil || n != size {
					b.Fatalf("got %d bytes, %v", n, err)
				}
			}
		})
	}
	_ = s3.DefaultEndpoint
}
