package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// s3Server is the versitygw process every tool talks to.
type s3Server struct {
	addr      string // 127.0.0.1:PORT
	dataDir   string // posix backend root: one directory per bucket
	accessKey string
	secretKey string
	cmd       *exec.Cmd
	exited    chan struct{}
}

const region = "us-east-1"

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// startS3 starts versitygw on a free loopback port with its data in dir.
func startS3(bin, dir string, log io.Writer) (*s3Server, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	s := &s3Server{addr: addr, dataDir: dir, accessKey: "bench" + randomHex(4), secretKey: randomHex(20), exited: make(chan struct{})}
	s.cmd = exec.Command(bin, "--port", addr, "--region", region, "--keep-alive", "--quiet", "posix", dir)
	s.cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+s.accessKey, "ROOT_SECRET_ACCESS_KEY="+s.secretKey)
	s.cmd.Stdout, s.cmd.Stderr = log, log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting versitygw: %w", err)
	}
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
			return s, nil
		}
		select {
		case <-s.exited:
			return nil, errors.New("versitygw exited at start (see the log)")
		default:
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("versitygw does not answer on %s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *s3Server) stop() {
	_ = s.cmd.Process.Kill()
	<-s.exited
}

func (s *s3Server) endpoint() string { return "http://" + s.addr }

// env is the credentials environment of every client process.
func (s *s3Server) env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + s.accessKey, "AWS_SECRET_ACCESS_KEY=" + s.secretKey, "AWS_DEFAULT_REGION=" + region}
}

// makeBucket creates a bucket (the posix backend keeps it as a directory).
func (s *s3Server) makeBucket(ctx context.Context, bucket string) error {
	c, err := newClient(s.addr, s.accessKey, s.secretKey)
	if err != nil {
		return err
	}
	return c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{Region: region})
}

// removeBucket deletes a bucket and everything in it, straight from the
// backend's directory (far faster than deleting object by object).
func (s *s3Server) removeBucket(bucket string) error {
	if bucket == "" || strings.ContainsAny(bucket, "/.") {
		return fmt.Errorf("bad bucket %q", bucket)
	}
	return os.RemoveAll(filepath.Join(s.dataDir, bucket))
}

// prefixSize is the number of bytes stored under bucket/prefix.
func (s *s3Server) prefixSize(bucket, prefix string) int64 {
	var n int64
	_ = filepath.Walk(filepath.Join(s.dataDir, bucket, prefix), func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

func newClient(addr, access, secret string) (*minio.Client, error) {
	return minio.New(addr, &minio.Options{
		Creds:  credentials.NewStaticV4(access, secret, ""),
		Region: region,
	})
}

// s3Main is the "s3put ADDR BUCKET KEY" and "s3get ADDR BUCKET KEY"
// subcommands: stdin to an object, or an object to stdout. Credentials
// come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
func s3Main(args []string) error {
	if len(args) != 4 {
		return errors.New("usage: bench s3put|s3get ADDR BUCKET KEY")
	}
	c, err := newClient(args[1], os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"))
	if err != nil {
		return err
	}
	ctx := context.Background()
	bucket, key := args[2], args[3]
	switch args[0] {
	case "s3put":
		// Unsigned payload and no Content-MD5, as portvol uploads; parts
		// of 16 MiB, 4 in flight, so the pipe never waits for one PUT.
		_, err = c.PutObject(ctx, bucket, key, os.Stdin, -1, minio.PutObjectOptions{
			DisableContentSha256: true, PartSize: 16 << 20, NumThreads: 4, ConcurrentStreamParts: true,
			ContentType: "application/octet-stream",
		})
		return err
	case "s3get":
		obj, err := c.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
		if err != nil {
			return err
		}
		defer obj.Close()
		// Hide os.File's ReadFrom so that the 1 MiB buffer is used.
		_, err = io.CopyBuffer(struct{ io.Writer }{os.Stdout}, obj, make([]byte, 1<<20))
		return err
	}
	return fmt.Errorf("unknown subcommand %q", args[0])
}
